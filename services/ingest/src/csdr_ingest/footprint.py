"""The footprint of a raster's valid pixels, in WGS84: what a bbox search should match."""

import rasterio
import rasterio.features
import rasterio.warp
from rasterio.enums import Resampling
from shapely.geometry import mapping, shape
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
    return dict(mapping(make_valid(shape(geojson))))
