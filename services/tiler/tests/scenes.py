"""Real items for tiler tests: synthetic scenes (blue, green, red, nir; and a pan band) written as
GeoTIFFs and ingested by csdr_ingest's pipeline into COGs and STAC items with statistics."""

from __future__ import annotations

import uuid
import warnings
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import morecantile
import numpy as np
import psycopg
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from csdr_ingest.pipeline import ingest_file
from csdr_ingest.settings import Settings as IngestSettings
from csdr_ingest.synthetic import DEMO_SCENES, write_scene
from tests.support.pixels import mercator_pixels

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
# Band order of the synthetic scenes (1-based): blue, green, red, nir.
BAND = {"blue": 1, "green": 2, "red": 3, "nir": 4}
# A smaller copy of the first demo scene: same place, 24 m pixels, quick to ingest.
SMALL = replace(DEMO_SCENES[0], size=512, gsd=24.0)


@dataclass
class Ingested:
    """An item as published: its collection, id, COG and STAC dict."""

    collection: str
    item: dict
    cog: Path

    @property
    def url(self) -> str:
        return f"/collections/{self.collection}/items/{self.item['id']}"

    def centre_tile(self, z: int) -> morecantile.Tile:
        """A tile at the footprint's centre, wholly inside the valid pixels at z >= 12."""
        west, south, east, north = self.item["bbox"]
        return WEB_MERCATOR.tile((west + east) / 2, (south + north) / 2, z)

    def stretch(self, band: int) -> tuple[float, float]:
        """The band's mean +- 2 stddev within min/max, from the item's stored statistics."""
        stats = self.item["assets"]["data"]["raster:bands"][band - 1]["statistics"]
        lo = max(stats["minimum"], stats["mean"] - 2 * stats["stddev"])
        hi = min(stats["maximum"], stats["mean"] + 2 * stats["stddev"])
        return lo, hi


def ingest(
    conn: psycopg.Connection, directory: Path, collection: str, scene=SMALL, name: str = ""
) -> Ingested:
    """Write `scene` and ingest it through csdr_ingest's pipeline into `collection`."""
    scene = replace(scene, name=name or f"{scene.name}_{uuid.uuid4().hex[:6]}")
    directory.mkdir(parents=True, exist_ok=True)
    source = write_scene(scene, directory)
    settings = IngestSettings(assets_dir=directory / "assets")
    item = ingest_file(source, conn, settings, collection=collection)
    return Ingested(collection, item, Path(item["assets"]["data"]["href"]))


def ingest_pan(conn: psycopg.Connection, directory: Path, collection: str) -> Ingested:
    """A one-band panchromatic scene (band description `pan`) over the same place."""
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / f"PAN_{uuid.uuid4().hex[:6]}.tif"
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:512, 0:512] / 512
    data = 800 + 600 * np.sin(6 * x) * np.cos(5 * y) + rng.normal(0, 20, (512, 512))
    profile = {
        "driver": "GTiff",
        "width": 512,
        "height": 512,
        "count": 1,
        "dtype": "uint16",
        "crs": SMALL.crs,
        "nodata": 0,
        "transform": rasterio.transform.from_origin(SMALL.west, SMALL.north, 24.0, 24.0),
    }
    with rasterio.open(source, "w", **profile) as dst:
        dst.write(np.clip(data, 1, 4000).astype("uint16"), 1)
        dst.descriptions = ("pan",)
    settings = IngestSettings(assets_dir=directory / "assets")
    item = ingest_file(
        source, conn, settings, collection=collection, when=datetime(2024, 5, 1, 3, 0)
    )
    return Ingested(collection, item, Path(item["assets"]["data"]["href"]))


def decode(content: bytes) -> np.ndarray:
    """An image response's bands, alpha last."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile(content) as mem, mem.open() as img:
            return img.read()


def source_pixels(path: Path, tile: morecantile.Tile, bands: list[int], size: int = 256):
    """The COG's pixels warped by GDAL onto the tile's Web Mercator grid (nearest)."""
    return mercator_pixels(path, WEB_MERCATOR.xy_bounds(tile), bands, size)


def to_8_bit(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """`values` as titiler's `rescale=lo,hi` renders them into uint8."""
    return np.clip((values - lo) * 255 / (hi - lo), 0, 255)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two images."""
    return float(np.corrcoef(a.astype("float64").ravel(), b.astype("float64").ravel())[0, 1])
