"""A small true-colour (or grey) PNG of a raster, stretched per band, transparent off the data."""

import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning

THUMBNAIL_MAX_SIZE = 512


def rgb_indexes(src: rasterio.DatasetReader) -> list[int]:
    """Bands for red, green, blue by their descriptions, else the first three (or the one band)."""
    names = [(d or "").lower() for d in src.descriptions]
    if all(c in names for c in ("red", "green", "blue")):
        return [names.index(c) + 1 for c in ("red", "green", "blue")]
    return [1, 2, 3] if src.count >= 3 else [1]


def write_thumbnail(
    src: rasterio.DatasetReader, dst: Path, indexes: list[int] | None = None
) -> None:
    """Write a PNG at most THUMBNAIL_MAX_SIZE across, 2-98 % stretch, alpha from the mask;
    `indexes` are the red, green, blue bands (default: found from the band descriptions)."""
    scale = max(1.0, max(src.width, src.height) / THUMBNAIL_MAX_SIZE)
    shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
    indexes = indexes or rgb_indexes(src)
    data = src.read(
        indexes, out_shape=(len(indexes), *shape), resampling=Resampling.average, masked=True
    )
    alpha = src.dataset_mask(out_shape=shape, resampling=Resampling.nearest)
    out = np.zeros((len(indexes), *shape), dtype=np.uint8)
    for i, band in enumerate(data):
        valid = band.compressed()
        if valid.size:
            lo, hi = np.percentile(valid, (2, 98))
            stretched = (band.filled(lo).astype("float64") - lo) / max(hi - lo, 1e-9)
            out[i] = (np.clip(stretched, 0, 1) * 255).astype(np.uint8)
    with warnings.catch_warnings():  # a PNG has no georeferencing, and needs none
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        _write_png(dst, out, alpha)


def _write_png(dst: Path, out: np.ndarray, alpha: np.ndarray) -> None:
    """Write RGB(A) or grey+alpha bytes as a PNG."""
    count, height, width = out.shape
    with rasterio.open(
        dst, "w", driver="PNG", width=width, height=height, count=count + 1, dtype="uint8"
    ) as png:
        png.write(out, indexes=list(range(1, count + 1)))
        png.write(alpha, count + 1)
