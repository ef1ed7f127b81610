"""Elevation algorithms for titiler's post-processing slot: shaded relief drawn as `gdaldem
hillshade` draws it, registered beside titiler's own algorithms (whose `terrainrgb` the
`terrain-rgb` preset uses as it is).

titiler's `hillshade` takes numpy's gradient in pixels, ignoring the pixel size, and scales the
result differently from GDAL: a QGIS user comparing it with `gdaldem hillshade` of the same
DEM sees other greys. This one is GDAL's formula (gdaldem_lib.cpp, GDALHillshadeAlg): Horn's
3 x 3 slopes divided by 8 x the pixel size in the tile's CRS, light from `azimuth` at `altitude`,
1 + 254 x the cosine of the incidence angle (1 in full shadow), 0 where any neighbour is nodata.
It reads one pixel around the tile (the preset's buffer) and returns the tile without it.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field
from rasterio import windows
from rio_tiler.models import ImageData
from titiler.core.algorithm import algorithms as titiler_algorithms
from titiler.core.algorithm.base import BaseAlgorithm

from csdr_render.presets import HILLSHADE


class HornHillshade(BaseAlgorithm):
    """gdaldem's hillshade of a one-band elevation tile read with a buffer of `buffer` pixels."""

    title: str = "Hillshade (gdaldem)"
    description: str = "Shaded relief as gdaldem hillshade draws it (Horn's method)."

    azimuth: float = Field(315.0, ge=0, le=360)
    altitude: float = Field(45.0, ge=0, le=90)
    z_factor: float = Field(1.0, gt=0)
    buffer: int = Field(1, ge=1, le=99)

    input_nbands: int = 1
    output_nbands: int = 1
    output_dtype: str = "uint8"

    def __call__(self, img: ImageData) -> ImageData:
        """The shaded tile, `buffer` pixels smaller on each side than the tile read."""
        z = img.array[0].astype("float64").filled(np.nan)
        # GDAL divides by the geotransform's own (negative) north-south size: y points north.
        ewres, nsres = img.transform.a, -img.transform.e
        # The 3 x 3 window of every inner pixel: a b c / d e f / g h i.
        a, b, c = z[:-2, :-2], z[:-2, 1:-1], z[:-2, 2:]
        d, f = z[1:-1, :-2], z[1:-1, 2:]
        g, h, i = z[2:, :-2], z[2:, 1:-1], z[2:, 2:]
        x = ((a + 2 * d + g) - (c + 2 * f + i)) / (8 * ewres)
        y = ((a + 2 * b + c) - (g + 2 * h + i)) / (8 * nsres)
        alt, az = math.radians(self.altitude), math.radians(self.azimuth)
        cang = (
            math.sin(alt) - (y * math.cos(az) - x * math.sin(az)) * math.cos(alt) * self.z_factor
        ) / np.sqrt(1 + self.z_factor**2 * (x * x + y * y))
        shade = np.where(cang <= 0, 1.0, 1.0 + 254.0 * cang)
        invalid = np.isnan(shade)
        values = np.where(invalid, 0, np.floor(shade + 0.5)).astype("uint8")
        if self.buffer > 1:
            inner = self.buffer - 1
            values = values[inner:-inner, inner:-inner]
            invalid = invalid[inner:-inner, inner:-inner]
        window = windows.Window(self.buffer, self.buffer, values.shape[1], values.shape[0])
        return ImageData(
            np.ma.MaskedArray(values[np.newaxis], mask=invalid[np.newaxis]),
            assets=img.assets,
            crs=img.crs,
            bounds=windows.bounds(window, img.transform),
            band_descriptions=["hillshade"],
        )


# titiler's algorithms and ours: what the tiler's `algorithm` parameter and presets accept.
# (Algorithms.register is annotated with instances but takes classes, as titiler's own do.)
algorithms = titiler_algorithms.register({HILLSHADE: HornHillshade})  # type: ignore[dict-item]
