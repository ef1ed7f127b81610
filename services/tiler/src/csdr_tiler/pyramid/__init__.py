"""Low-zoom pyramids of mosaics ("layers"): each collection's "latest, least cloudy first" mosaic
and each registered search's mosaic in use, as raw pixel values for every WebMercatorQuad tile
from z0 to the pyramid's deepest level, kept in the database; how they stay fresh, are built and
are bounded is in docs/tiler-internals.md."""

from csdr_tiler.pyramid.layers import TILE_SIZE, TMS_ID, Behind, Generation, Layer
from csdr_tiler.pyramid.rasters import Raster, downsample, mosaic
from csdr_tiler.pyramid.refresher import Refresher
from csdr_tiler.pyramid.search_layers import SearchLayers
from csdr_tiler.pyramid.tiles import AssetsOf, Pyramid, RenderBase

__all__ = [
    "TILE_SIZE",
    "TMS_ID",
    "AssetsOf",
    "Behind",
    "Generation",
    "Layer",
    "Pyramid",
    "Raster",
    "Refresher",
    "RenderBase",
    "SearchLayers",
    "downsample",
    "mosaic",
]
