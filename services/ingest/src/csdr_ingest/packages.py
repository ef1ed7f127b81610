"""Scene packages as delivered: `.tar.gz`/`.tgz`/`.tar`/`.zip` archives or unpacked folders.

An archive is unpacked into a private temporary directory (never outside it: members with
absolute paths or `..` are refused) and removed afterwards, whatever happens.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from csdr_ingest.errors import PackageInvalid, SourceNotFound

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def is_archive(path: Path) -> bool:
    """True for a file named like a package archive."""
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


@contextmanager
def unpacked(path: Path, work_dir: Path | None = None) -> Iterator[Path]:
    """The package's contents as a directory: the folder itself, or the unpacked archive."""
    if path.is_dir():
        yield path
        return
    if not path.is_file():
        raise SourceNotFound(f"{path}: no such file on the ingest server")
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
    target = Path(tempfile.mkdtemp(prefix="csdr-package-", dir=work_dir))
    try:
        _extract(path, target)
        yield target
    finally:
        shutil.rmtree(target, ignore_errors=True)


def _extract(path: Path, target: Path) -> None:
    """Unpack a tar (any compression) or zip archive into `target`, or say why it cannot be."""
    try:
        if path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                for name in archive.namelist():
                    if not (target / name).resolve().is_relative_to(target.resolve()):
                        raise PackageInvalid(f"{path.name}: member {name!r} escapes the package")
                archive.extractall(target)
        else:
            with tarfile.open(path) as archive:
                archive.extractall(target, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise PackageInvalid(
            f"{path.name}: the archive is damaged or truncated and cannot be unpacked ({exc})"
        ) from exc
