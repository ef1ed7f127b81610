"""The values a pyramid stores per tile (`Raster`), how four tiles make their parent, and which
of titiler's tile options leave those values as the scenes would give them."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rio_tiler.models import ImageData
from rio_tiler.mosaic.methods.defaults import FirstMethod

from csdr_tiler.pyramid.layers import TILE_SIZE

# Tile-time options with which the stored values are what the scenes would give.
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "tilesize": (None, TILE_SIZE),
    "buffer": (None, 0, 0.0),
    "padding": (None, 0),
    "nodata": (None,),
    "unscale": (None, False),
    "asset_as_band": (None, False),
    "vrt_options": (None, {}),
}
# Options that do not change the values: resampling applies when reading scenes (the pyramid
# averages), threads and search limits concern how scenes are read.
IGNORED = ("resampling_method", "reproject_method", "threads", "pixel_selection", "expression")


@dataclass(frozen=True)
class Raster:
    """One stored tile: bands of raw values and where they are valid."""

    data: np.ndarray  # (bands, height, width)
    valid: np.ndarray  # (height, width) bool

    def encode(self) -> bytes:
        """The bands, then the packed mask, zlib-compressed."""
        raw = np.ascontiguousarray(self.data).tobytes() + np.packbits(self.valid).tobytes()
        return zlib.compress(raw, 1)

    @classmethod
    def decode(cls, blob: bytes, dtype: str, bands: int) -> Raster:
        """The inverse of `encode` for a TILE_SIZE tile."""
        raw = zlib.decompress(blob)
        size = bands * TILE_SIZE * TILE_SIZE * np.dtype(dtype).itemsize
        data = np.frombuffer(raw[:size], dtype=dtype).reshape(bands, TILE_SIZE, TILE_SIZE)
        bits = np.unpackbits(np.frombuffer(raw[size:], dtype="uint8"))
        return cls(data, bits[: TILE_SIZE * TILE_SIZE].reshape(TILE_SIZE, TILE_SIZE).astype(bool))

    @classmethod
    def stored(cls, blob: bytes | None, dtype: str, bands: int) -> Raster | None:
        """A stored tile's values (None: no scene there)."""
        return cls.decode(blob, dtype, bands) if blob is not None else None

    @classmethod
    def from_image(cls, image: ImageData) -> Raster:
        """The values of a rendered mosaic tile; valid where every band is."""
        mask = np.ma.getmaskarray(image.array)
        valid = np.logical_not(mask.any(axis=0))
        return cls(np.asarray(image.array.data), valid)


def downsample(children: Sequence[Raster | None]) -> Raster | None:
    """The parent of four tiles (top-left, top-right, bottom-left, bottom-right; None where no
    scene lies): each pixel the mean of the valid pixels of its 2 x 2 block, valid where any is
    (GDAL's AVERAGE overviews do the same within a COG)."""
    present = [c for c in children if c is not None]
    if not present:
        return None
    bands, dtype = present[0].data.shape[0], present[0].data.dtype
    size = 2 * TILE_SIZE
    data = np.zeros((bands, size, size), dtype=dtype)
    valid = np.zeros((size, size), dtype=bool)
    for i, child in enumerate(children):
        if child is None:
            continue
        row, col = divmod(i, 2)
        rows = slice(row * TILE_SIZE, (row + 1) * TILE_SIZE)
        cols = slice(col * TILE_SIZE, (col + 1) * TILE_SIZE)
        data[:, rows, cols] = child.data
        valid[rows, cols] = child.valid
    blocks = valid.reshape(TILE_SIZE, 2, TILE_SIZE, 2)
    count = blocks.sum(axis=(1, 3))
    sums = (data.reshape(bands, TILE_SIZE, 2, TILE_SIZE, 2) * blocks[None]).sum(
        axis=(2, 4), dtype="float64"
    )
    mean = np.divide(sums, count, out=np.zeros_like(sums), where=count > 0)
    if np.issubdtype(dtype, np.integer):
        mean = np.rint(mean)
    return Raster(mean.astype(dtype), count > 0)


def mosaic(rasters: Sequence[Sequence[Raster | None]]) -> Raster | None:
    """Tiles side by side (rows of columns) as one raster; None where all are empty."""
    present = [r for row in rasters for r in row if r is not None]
    if not present:
        return None
    bands, dtype = present[0].data.shape[0], present[0].data.dtype
    n = len(rasters)
    data = np.zeros((bands, n * TILE_SIZE, n * TILE_SIZE), dtype=dtype)
    valid = np.zeros((n * TILE_SIZE, n * TILE_SIZE), dtype=bool)
    for r, row in enumerate(rasters):
        for c, raster in enumerate(row):
            if raster is not None:
                rows = slice(r * TILE_SIZE, (r + 1) * TILE_SIZE)
                cols = slice(c * TILE_SIZE, (c + 1) * TILE_SIZE)
                data[:, rows, cols] = raster.data
                valid[rows, cols] = raster.valid
    return Raster(data, valid)


def asset_choice(assets: Any) -> list[tuple[str, list[int] | None]] | None:
    """titiler's `assets` as (name, 1-based band indexes or None for all); None when an asset
    carries options the pyramid cannot apply."""
    if not assets:
        return None
    choice: list[tuple[str, list[int] | None]] = []
    for asset in assets if isinstance(assets, list | tuple) else [assets]:
        if isinstance(asset, str):
            choice.append((asset, None))
        elif isinstance(asset, dict) and set(asset) <= {"name", "indexes"} and "name" in asset:
            indexes = asset.get("indexes")
            choice.append((asset["name"], list(indexes) if indexes else None))
        else:
            return None
    return choice


def neutral(options: dict[str, Any]) -> bool:
    """Whether the tile options leave the values as stored (see NEUTRAL and IGNORED)."""
    for name, value in options.items():
        if name in NEUTRAL:
            if value not in NEUTRAL[name]:
                return False
        elif name not in IGNORED and name != "assets" and value not in (None, False):
            return False
    selection = options.get("pixel_selection")
    return selection is None or selection is FirstMethod or isinstance(selection, FirstMethod)
