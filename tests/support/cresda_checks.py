"""Checks shared by the CRESDA package tests: files left behind, distance of the footprint
to the XML corners, validation against the offline STAC JSON Schemas."""

import json
from pathlib import Path

import numpy as np
from jsonschema import Draft7Validator
from pyproj import Geod
from rasterio.warp import transform as warp_transform
from referencing import Registry, Resource
from shapely.geometry import Point, shape

from tests.fixtures import STAC_SCHEMAS
from tests.support.lookalike import texture

ITEM_SCHEMA = "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json"
COLLECTION_SCHEMA = (
    "https://schemas.stacspec.org/v1.1.0/collection-spec/json-schema/collection.json"
)
GEOD = Geod(ellps="WGS84")


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


def max_corner_distance_m(geometry: dict, corners: list[tuple[float, float]]) -> float:
    """Largest distance (metres) from an XML corner to the item's footprint outline."""
    outline = shape(geometry).exterior if shape(geometry).geom_type == "Polygon" else None
    assert outline is not None
    worst = 0.0
    for lon, lat in corners:
        nearest = outline.interpolate(outline.project(Point(lon, lat)))
        _, _, d = GEOD.inv(lon, lat, nearest.x, nearest.y)
        worst = max(worst, d)
    return worst


def _validator(schema_url: str, registry: Registry) -> Draft7Validator:
    schema = registry.get_or_retrieve(schema_url).value.contents
    return Draft7Validator(schema, registry=registry)


def _registry() -> Registry:
    def retrieve(uri: str) -> Resource:
        path = STAC_SCHEMAS / uri.split("://", 1)[1].split("#")[0]
        return Resource.from_contents(json.loads(path.read_text()))

    return Registry(retrieve=retrieve)  # type: ignore[call-arg]


def validate(document: dict, core_url: str) -> None:
    registry = _registry()
    for url in [core_url, *document.get("stac_extensions", [])]:
        errors = list(_validator(url, registry).iter_errors(document))
        assert not errors, f"{url}: {[e.message for e in errors[:3]]}"


def validate_published(conn, item: dict) -> tuple[dict, dict]:
    """Validate an ingested item as stored in pgSTAC, and its collection; return both.

    The STAC API serves stored items with their links; an item naming a collection must link to
    it (item-spec 1.1), which the API adds (the e2e inbox test validates a served item)."""
    cid = item["collection"]
    stored = conn.execute("SELECT pgstac.get_item(%s, %s)", (item["id"], cid)).fetchone()[0]
    stored["links"] = [{"rel": "collection", "href": f"http://node/collections/{cid}"}]
    collection = conn.execute("SELECT pgstac.get_collection(%s)", (cid,)).fetchone()[0]
    validate(stored, ITEM_SCHEMA)
    validate(collection, COLLECTION_SCHEMA)
    return stored, collection


def ortho_and_source_values(
    ortho, rpc, lon: float, lat: float, band: int, texture_band: int
) -> tuple[float, float]:
    """The orthorectified pixel holding (lon, lat), and the look-alike texture at the source
    position GDAL's RPC transformer (`rpc`) maps that pixel's centre to."""
    [x], [y] = warp_transform("EPSG:4326", ortho.crs, [lon], [lat])
    r, c = ortho.index(x, y)
    cx, cy = ortho.xy(r, c)
    [clon], [clat] = warp_transform(ortho.crs, "EPSG:4326", [cx], [cy])
    [value] = next(ortho.sample([(cx, cy)], indexes=[band]))
    row, col = rpc.rowcol(clon, clat, op=lambda v: v)  # fractional source position
    # GDAL's RPC transformer counts from the top-left corner of the first pixel; the texture
    # is sampled at pixel centres.
    expected = texture(texture_band, np.array(row - 0.5), np.array(col - 0.5))
    return float(value), float(expected)
