"""STAC items for tests: a rectangle footprint, the properties and assets a test gives, in the
shape pgSTAC's create/upsert functions take."""

from __future__ import annotations

from typing import Any

COG = "image/tiff; application=geotiff; profile=cloud-optimized"

BBox = tuple[float, float, float, float]


def box(bbox: BBox | list[float]) -> dict[str, Any]:
    """The GeoJSON polygon of `bbox` (west, south, east, north), counter-clockwise."""
    west, south, east, north = bbox
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}


def square(lon: float, lat: float, size: float) -> BBox:
    """The bbox of a `size`-degree square whose south-west corner is at lon, lat."""
    return (lon, lat, lon + size, lat + size)


def cog(href: str) -> dict[str, Any]:
    """A data asset: the COG at `href`."""
    return {"href": href, "type": COG, "roles": ["data"]}


def stac_item(
    item_id: str,
    collection: str,
    bbox: BBox | list[float],
    properties: dict[str, Any],
    assets: dict[str, Any] | None = None,
    links: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A STAC 1.1 item over `bbox` with `properties` (which carry its datetime)."""
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": item_id,
        "collection": collection,
        "geometry": box(bbox),
        "bbox": list(bbox),
        "properties": properties,
        "links": links or [],
        "assets": assets or {},
    }
