"""The vendored browser library (MapLibre GL JS, copied from its npm package): where it lives,
the version and checksums recorded when it was copied, and the check that the files served are
those files."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAPLIBRE_DIR = STATIC_DIR / "vendor" / "maplibre-gl"


class VendorMismatch(RuntimeError):
    """A vendored file is missing or differs from the checksum recorded when it was copied."""


@dataclass(frozen=True)
class Vendored:
    """A library copied into static/vendor: its npm name, version and file checksums."""

    package: str
    version: str
    files: dict[str, str]


def record(directory: Path = MAPLIBRE_DIR) -> Vendored:
    """The record (VENDOR.json) written when the library was copied."""
    doc = json.loads((directory / "VENDOR.json").read_text())
    return Vendored(doc["package"], doc["version"], dict(doc["files"]))


@cache
def verified(directory: Path = MAPLIBRE_DIR) -> Vendored:
    """The record, once every file it names has been found with its recorded sha256."""
    vendored = record(directory)
    for name, want in vendored.files.items():
        path = directory / name
        if not path.is_file():
            raise VendorMismatch(f"{vendored.package} {vendored.version}: {name} is missing")
        got = hashlib.sha256(path.read_bytes()).hexdigest()
        if got != want:
            raise VendorMismatch(
                f"{vendored.package} {vendored.version}: {name} has sha256 {got}, "
                f"VENDOR.json records {want}"
            )
    return vendored
