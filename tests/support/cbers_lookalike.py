"""A CBERS-04 MUX LEVEL2 package built on the real `<root><data>` record
(tests/fixtures/cresda/records): the record as delivered beside one 4-band uint8 TIFF on the
record's UTM product rectangle, textured inside the swath its data corners draw and 0 around it,
at the record's `pixelSpacing` times the smallest integer factor that keeps it `max_size` across.
"""

import math
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.features import geometry_mask

from tests.fixtures import CRESDA_RECORDS

RECORD = CRESDA_RECORDS / "CB04-MUX-58-115-20151023-L20000019603.XML"
CORNERS = ("UpperLeft", "UpperRight", "LowerRight", "LowerLeft")


def record_fields(record: Path = RECORD) -> dict[str, str]:
    """The record's `<data>` fields by tag."""
    data = ET.parse(record).getroot().find("data")
    assert data is not None
    return {e.tag: (e.text or "").strip() for e in data}


def utm_crs(zone: str) -> CRS:
    """`38S` -> WGS 84 / UTM zone 38S."""
    number, hemisphere = int(zone[:-1]), zone[-1].upper()
    return CRS.from_epsg((32700 if hemisphere == "S" else 32600) + number)


def band_values(band: int, height: int, width: int) -> np.ndarray:
    """Distinct, never-zero uint8 texture for `band` (1-based)."""
    rows = np.arange(height)[:, np.newaxis]
    cols = np.arange(width)[np.newaxis, :]
    return (1 + (37 * band + 3 * rows + 5 * cols) % 250).astype("uint8")


def write_cbers_mux_package(out_dir: Path, max_size: int = 400) -> Path:
    """The package folder: `<record name>.XML` and `<record name>.TIF`."""
    fields = record_fields()
    xs = [float(fields[f"product{c}X"]) for c in CORNERS]
    ys = [float(fields[f"product{c}Y"]) for c in CORNERS]
    spacing = float(fields["pixelSpacing"])
    factor = max(1, math.ceil(max(max(xs) - min(xs), max(ys) - min(ys)) / spacing / max_size))
    spacing *= factor
    width = math.ceil((max(xs) - min(xs)) / spacing)
    height = math.ceil((max(ys) - min(ys)) / spacing)
    transform = Affine(spacing, 0, min(xs), 0, -spacing, max(ys))
    swath = [(float(fields[f"data{c}X"]), float(fields[f"data{c}Y"])) for c in CORNERS]
    polygon = {"type": "Polygon", "coordinates": [[*swath, swath[0]]]}
    outside = geometry_mask([polygon], (height, width), transform)
    folder = out_dir / RECORD.stem
    folder.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 4,
        "dtype": "uint8",
        "crs": utm_crs(fields["zone"]),
        "transform": transform,
    }
    with rasterio.open(folder / f"{RECORD.stem}.TIF", "w", **profile) as dst:
        for band in range(1, 5):
            values = band_values(band, height, width)
            values[outside] = 0
            dst.write(values, band)
    shutil.copyfile(RECORD, folder / RECORD.name)
    return folder
