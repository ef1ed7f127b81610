"""Look-alike CRESDA packages for tests, demos and benchmarks: the real XML and RPB files of a
delivery paired with synthetic, textured TIFFs of the size the XML gives, optionally downscaled.

Downscaling by an integer factor keeps the geometry true: in the `.rpb` the line/sample offsets
and scales are divided by the factor, in the XML `WidthInPixels`/`HeightInPixels` are divided and
`ImageGSD` multiplied (tests/fixtures/cresda/README.md). No real imagery ships with the node.
Run: python -m tests.support.lookalike FIXTURE_DIR OUT_DIR [--max-size N] [--archive tar.gz]
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from csdr_ingest.cresda.metadata import is_product_metadata

RPB_PIXEL_KEYS = ("lineOffset", "sampOffset", "lineScale", "sampScale")


def texture(band: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Smooth DN values that encode the pixel position (a one-pixel shift changes them by 12 or
    more), wrapped below 60001 for full-size images, never 0 (the orthorectified COG's nodata).
    `rows` and `cols` broadcast: a column and a row vector give a whole block cheaply."""
    ramp = 40 * np.sin(cols / 9.0) * np.cos(rows / 11.0)
    ramp += 12.0 * cols
    ramp += 300 + 150 * band + 17.0 * rows
    # ramp mod 60000, + 1; floor is several times faster than np.mod on float64.
    ramp -= 60000 * np.floor(ramp / 60000)
    ramp += 1
    return ramp


def scale_rpb(text: str, factor: int) -> str:
    """An RPB's text with its pixel offsets and scales divided by `factor`."""

    def divide(match: re.Match[str]) -> str:
        return f"{match.group(1)}{float(match.group(2)) / factor!r};"

    pattern = rf"((?:{'|'.join(RPB_PIXEL_KEYS)})\s*=\s*)([-+0-9.Ee]+);"
    return re.sub(pattern, divide, text)


def scale_xml(text: str, factor: int) -> str:
    """A ProductMetaData XML's text with its pixel counts divided and its GSD multiplied."""

    def tag(name: str, fn: object) -> None:
        nonlocal text
        text = re.sub(
            rf"<{name}>([^<]+)</{name}>",
            lambda m: f"<{name}>{fn(float(m.group(1)))}</{name}>",  # type: ignore[operator]
            text,
        )

    tag("WidthInPixels", lambda v: math.ceil(v / factor))
    tag("HeightInPixels", lambda v: math.ceil(v / factor))
    tag("ImageGSD", lambda v: repr(v * factor))
    return text


def write_tiff(
    path: Path, width: int, height: int, count: int, block_rows: int = 512, first_band: int = 1
) -> None:
    """A plain (sensor-geometry, no CRS) uint16 TIFF with the look-alike texture, written in row
    blocks from broadcast row/column vectors, so a full-size 12000 x 13719 scene takes seconds
    and little memory. Band i carries texture(first_band + i - 1): files given different
    `first_band`s have different pixels."""
    profile = {"driver": "GTiff", "width": width, "height": height, "count": count}
    cols = np.arange(width, dtype="float64")[np.newaxis, :]
    with rasterio.open(path, "w", dtype="uint16", tiled=True, **profile) as dst:
        for top in range(0, height, block_rows):
            rows = np.arange(top, min(top + block_rows, height), dtype="float64")[:, np.newaxis]
            window = Window(0, top, width, rows.shape[0])
            # All bands of a window at once: the TIFF is pixel-interleaved.
            bands = range(first_band, first_band + count)
            block = np.stack([texture(b, rows, cols) for b in bands])
            dst.write(block.astype("uint16"), window=window)


def _int_tag(text: str, name: str) -> int:
    match = re.search(rf"<{name}>([^<]+)</{name}>", text)
    if match is None:
        raise ValueError(f"no <{name}>")
    return int(float(match.group(1)))


def write_lookalike(
    fixture: Path,
    out_dir: Path,
    max_size: int | None = 600,
    archive: str | None = "tar.gz",
    drop: tuple[str, ...] = (),
    compresslevel: int = 6,
) -> Path:
    """Build the package of a fixture folder under `out_dir`; return the archive (or folder).

    `max_size` caps each TIFF's larger side (None: full size); `drop` names part suffixes
    (e.g. `MSS2`) whose XML and image are left out; `compresslevel` is gzip's (1 is fastest)."""
    folder = out_dir / fixture.name
    folder.mkdir(parents=True, exist_ok=True)
    for src in sorted(fixture.iterdir()):
        if any(src.stem.endswith(f"-{part}") for part in drop):
            continue
        if src.suffix.lower() != ".xml" or not is_product_metadata(src):
            if src.suffix.lower() != ".rpb":
                shutil.copyfile(src, folder / src.name)  # order.xml and friends, as delivered
            continue
        text = src.read_text(encoding="utf-8")
        width, height = _int_tag(text, "WidthInPixels"), _int_tag(text, "HeightInPixels")
        rpb = src.with_suffix(".rpb")
        # A scene-level XML (beside `<stem>-MSS2.xml` and friends) has no image of its own.
        has_image = not any(p.stem.startswith(f"{src.stem}-") for p in fixture.glob("*.xml"))
        factor = max(1, math.ceil(max(width, height) / max_size)) if max_size else 1
        if has_image:
            bands = re.search(r"<Bands>([^<]+)</Bands>", text)
            count = len(bands.group(1).split(",")) if bands else 1
            write_tiff(
                folder / f"{src.stem}.tiff",
                math.ceil(width / factor),
                math.ceil(height / factor),
                count,
            )
        if rpb.exists():
            (folder / rpb.name).write_text(scale_rpb(rpb.read_text(), factor))
        (folder / src.name).write_text(scale_xml(text, factor), encoding="utf-8")
    if archive is None:
        return folder
    if archive == "zip":
        target = out_dir / f"{fixture.name}.zip"
        with zipfile.ZipFile(target, "w") as zf:
            for p in sorted(folder.iterdir()):
                zf.write(p, f"{fixture.name}/{p.name}")
    else:
        target = out_dir / f"{fixture.name}.{archive}"
        gz = archive in ("tar.gz", "tgz")
        options = {"compresslevel": compresslevel} if gz else {}
        with tarfile.open(target, "w:gz" if gz else "w", **options) as tf:  # type: ignore[call-overload]
            tf.add(folder, arcname=fixture.name)
    shutil.rmtree(folder)
    return target


def main() -> None:
    """Command line: build one look-alike package."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("fixture", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--max-size", type=int, default=600)
    parser.add_argument("--archive", choices=["tar.gz", "zip", "none"], default="tar.gz")
    args = parser.parse_args()
    archive = None if args.archive == "none" else args.archive
    print(write_lookalike(args.fixture, args.out_dir, args.max_size, archive))


if __name__ == "__main__":
    main()
