"""Footprints in WGS84: the valid pixels of a raster, and the one way every footprint is written
out (right-hand rule: exterior rings counter-clockwise, holes clockwise, as RFC 7946 and the CEOS
STAC best practice ask)."""

from typing import Any

import rasterio
import rasterio.features
import rasterio.warp
import shapely
from rasterio.enums import Resampling
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union
from shapely.validation import make_valid

# Read the mask at most this many pixels across: enough for a footprint, cheap on big scenes.
MASK_MAX_SIZE = 1024


def valid_footprint(src: rasterio.DatasetReader, tolerance_px: float = 2.0) -> dict[str, object]:
    """GeoJSON geometry (EPSG:4326) of the pixels that are not nodata, simplified."""
    scale = max(1.0, max(src.width, src.height) / MASK_MAX_SIZE)
    shape_ = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
    mask = src.dataset_mask(out_shape=shape_, resampling=Resampling.nearest)
    transform = src.transform @ src.transform.scale(src.width / shape_[1], src.height / shape_[0])
    polygons = [
        shape(geom)
        for geom, value in rasterio.features.shapes(mask, mask=mask > 0, transform=transform)
        if value > 0
    ]
    if not polygons:
        raise ValueError("raster has no valid pixels")
    tolerance = tolerance_px * abs(transform.a)
    footprint = unary_union(polygons).simplify(tolerance, preserve_topology=True)
    geojson = rasterio.warp.transform_geom(
        src.crs, "EPSG:4326", mapping(footprint), antimeridian_cutting=True, precision=7
    )
    return as_geojson(make_valid(shape(geojson)))


def as_geojson(footprint: BaseGeometry) -> dict[str, Any]:
    """The GeoJSON geometry of a footprint, its rings wound by the right-hand rule."""
    return dict(mapping(shapely.orient_polygons(footprint, exterior_cw=False)))
