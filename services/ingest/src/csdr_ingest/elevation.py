"""Elevation products (DEM, DSM) as collections of their own: a single-band elevation GeoTIFF
(float or integer metres, with nodata, map-projected as delivered) ingested into a collection
whose id ends in `-dem` or `-dsm` becomes a COG whose `raster:bands` say unit `m` with
statistics, in a collection described as an elevation model, rendered by the tiler's elevation
presets (csdr_render: hillshade, relief, terrain-rgb). A DOM (orthophoto) is imagery.
"""

from __future__ import annotations

from typing import Any

import rasterio

from csdr_ingest.errors import NotElevation
from csdr_ingest.pgstac import new_collection
from csdr_render.presets import derive_presets

KINDS = {
    "dem": ("Digital elevation model", "bare-earth heights"),
    "dsm": ("Digital surface model", "heights of the surface, buildings and trees included"),
}
ELEVATION_DTYPES = {"int16", "int32", "float32", "float64"}
UNIT = "m"


def elevation_kind(collection: str) -> str | None:
    """`dem` or `dsm` for a collection id ending in `-dem`/`-dsm` (or being one), else None."""
    suffix = collection.lower().rsplit("-", 1)[-1]
    return suffix if suffix in KINDS else None


def check_elevation(src: rasterio.DatasetReader, name: str, collection: str) -> None:
    """An elevation product must be one band of heights in a numeric type that holds them."""
    if src.count != 1:
        raise NotElevation(
            f"{name} has {src.count} bands, but {collection} holds elevation models: one band"
            " of heights in metres"
        )
    if src.dtypes[0] not in ELEVATION_DTYPES:
        raise NotElevation(
            f"{name} stores {src.dtypes[0]} values; heights for {collection} must be"
            f" {', '.join(sorted(ELEVATION_DTYPES))}"
        )


def describe_elevation(item: dict[str, Any]) -> dict[str, Any]:
    """The item of an elevation COG: its band's unit is metres, and no spectral bands."""
    asset = item["assets"]["data"]
    asset.pop("eo:bands", None)
    for band in asset.get("raster:bands", []):
        band["unit"] = UNIT
    item["stac_extensions"] = [e for e in item.get("stac_extensions", []) if "/eo/" not in e]
    return item


def elevation_collection(
    collection: str, kind: str, license_: str, item: dict[str, Any]
) -> dict[str, Any]:
    """The collection created for the first elevation item: described as such, with the
    relief render (the other presets are algorithms the render extension cannot say)."""
    title, what = KINDS[kind]
    base = new_collection(collection, license_)
    base["title"] = f"{title} ({collection})"
    base["description"] = (
        f"{title}s ({what}) served by this CSDR node as Cloud-Optimized GeoTIFFs of heights in"
        " metres; tiles as hillshade, colour relief and Mapbox terrain-RGB for 3D clients."
    )
    base["keywords"] = [
        "elevation",
        kind.upper(),
        title,
        "EARTH SCIENCE > LAND SURFACE > TOPOGRAPHY",
    ]
    base["item_assets"]["data"]["raster:bands"] = [{"unit": UNIT}]
    base["item_assets"]["data"]["roles"] = ["data", "elevation"]
    presets = derive_presets(item["assets"])
    renders = {n: p.render() for n, p in presets.items() if p.algorithm is None}
    if renders:
        base["renders"] = renders
        base["stac_extensions"] = [
            "https://stac-extensions.github.io/render/v2.0.0/schema.json",
            "https://stac-extensions.github.io/item-assets/v1.0.0/schema.json",
        ]
    return base
