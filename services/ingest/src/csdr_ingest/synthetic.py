"""Deterministic synthetic scenes: 4-band uint16 GeoTIFFs (blue, green, red, nir) over a real
place, textured, with nodata outside a rotated footprint, as a sensor swath would leave.

No real imagery ships with the node; `make up` generates these and ingests them like any input.
Run: python -m csdr_ingest.synthetic OUTDIR
"""

import argparse
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

BANDS = ("blue", "green", "red", "nir")
NODATA = 0


@dataclass(frozen=True)
class Scene:
    """Where and when a synthetic scene lies (UTM coordinates of its upper-left corner)."""

    name: str
    crs: str
    west: float
    north: float
    acquired: datetime
    seed: int
    size: int = 1536
    gsd: float = 8.0
    rotation_deg: float = 12.0


# The Yellow River delta near Dongying, Shandong (UTM zone 50N): three overlapping passes.
DEMO_SCENES = (
    Scene(
        "CSDR_DEMO_E118.9_N37.8_20240512",
        "EPSG:32650",
        662_000,
        4_190_000,
        datetime(2024, 5, 12, 3, 4, 5),
        seed=1,
    ),
    Scene(
        "CSDR_DEMO_E119.0_N37.7_20240607",
        "EPSG:32650",
        671_000,
        4_181_000,
        datetime(2024, 6, 7, 3, 1, 44),
        seed=2,
    ),
    Scene(
        "CSDR_DEMO_E118.8_N37.9_20240918",
        "EPSG:32650",
        653_000,
        4_199_000,
        datetime(2024, 9, 18, 2, 58, 12),
        seed=3,
        rotation_deg=-9.0,
    ),
)


def scene_pixels(size: int, seed: int, rotation_deg: float) -> np.ndarray:
    """Textured reflectance-like DN values, shape (4, size, size), NODATA outside the swath."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype("float32") / size
    fields = 0.5 + 0.25 * np.sin(2 * math.pi * (3 + seed) * x) * np.cos(2 * math.pi * 4 * y)
    water = np.sin(2 * math.pi * (1.5 * x + 0.7 * y + seed / 5)) > 0.82
    noise = rng.normal(0, 0.03, (size, size)).astype("float32")
    vegetation = np.clip(fields + noise, 0, 1)
    base = {
        "blue": 900 + 300 * (1 - vegetation),
        "green": 1100 + 500 * vegetation,
        "red": 1300 + 900 * (1 - vegetation),
        "nir": 1500 + 3000 * vegetation,
    }
    data = np.stack([np.where(water, 700 if b != "nir" else 300, base[b]) for b in BANDS])
    # A rotated rectangle of valid pixels: nodata outside, like an orthorectified swath.
    theta = math.radians(rotation_deg)
    u = (x - 0.5) * math.cos(theta) + (y - 0.5) * math.sin(theta)
    v = -(x - 0.5) * math.sin(theta) + (y - 0.5) * math.cos(theta)
    inside = (np.abs(u) < 0.42) & (np.abs(v) < 0.40)
    return np.where(inside, np.clip(data, 1, 65535), NODATA).astype("uint16")


def write_scene(scene: Scene, directory: Path) -> Path:
    """Write one scene as a plain tiled GeoTIFF (not yet a COG) and return its path."""
    path = directory / f"{scene.name}.tif"
    profile = {
        "driver": "GTiff",
        "width": scene.size,
        "height": scene.size,
        "count": len(BANDS),
        "dtype": "uint16",
        "crs": scene.crs,
        "nodata": NODATA,
        "tiled": True,
        "transform": from_origin(scene.west, scene.north, scene.gsd, scene.gsd),
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(scene_pixels(scene.size, scene.seed, scene.rotation_deg))
        dst.descriptions = BANDS
        dst.update_tags(TIFFTAG_DATETIME=scene.acquired.strftime("%Y:%m:%d %H:%M:%S"))
    return path


def write_demo_scenes(directory: Path) -> list[Path]:
    """Write every demo scene missing from `directory`; return all their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for scene in DEMO_SCENES:
        path = directory / f"{scene.name}.tif"
        paths.append(path if path.exists() else write_scene(scene, directory))
    return paths


def main() -> None:
    """Command line: write the demo scenes into a directory and print their paths."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("directory", type=Path)
    for path in write_demo_scenes(parser.parse_args().directory):
        print(path)


if __name__ == "__main__":
    main()
