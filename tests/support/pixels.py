"""What GDAL makes of a COG on a Web Mercator grid: the reference tiles are compared with."""

from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import from_bounds
from rasterio.vrt import WarpedVRT


def mercator_pixels(path: Path | str, bounds, bands: list[int], size: int) -> np.ndarray:
    """The COG's `bands` warped by GDAL onto a `size` x `size` EPSG:3857 grid over `bounds`
    (nearest neighbour), as float64."""
    grid = from_bounds(*bounds, size, size)
    with (
        rasterio.open(path) as src,
        WarpedVRT(
            src,
            crs="EPSG:3857",
            transform=grid,
            width=size,
            height=size,
            resampling=Resampling.nearest,
        ) as vrt,
    ):
        return vrt.read(bands).astype("float64")
