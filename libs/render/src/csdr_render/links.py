"""Map links ("copy for QGIS") for items and collections, in the STAC web-map-links extension's
form (https://github.com/stac-extensions/web-map-links): an `xyz` template and a `tilejson` per
render preset, and one `wmts` capabilities document whose layers are the presets.

The URLs are the tiler's preset routes: no `|`, `#` or `&` in an XYZ template, so QGIS keeps it
intact, and the WMTS document carries the extent and zoom range. The preset names come from the
same `derive_presets` the tiler draws with, so a link never names a preset the tiler lacks. An
item whose bands have no common names gets titiler's plain rendering of its data asset instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from csdr_render.presets import Preset, derive_presets

WEB_MAP_LINKS = "https://stac-extensions.github.io/web-map-links/v1.2.0/schema.json"
MAP_RELS = ("xyz", "tilejson", "wmts")
TMS = "WebMercatorQuad"


def _links(base: str, presets: Mapping[str, Preset], what: str) -> list[dict[str, Any]]:
    if not presets:
        return []
    links: list[dict[str, Any]] = []
    for name, preset in presets.items():
        links.append(
            {
                "rel": "xyz",
                "href": f"{base}/{name}/tiles/{TMS}/{{z}}/{{x}}/{{y}}.png",
                "type": "image/png",
                "title": f"{preset.title} of this {what}: XYZ layer for QGIS",
            }
        )
        links.append(
            {
                "rel": "tilejson",
                "href": f"{base}/{name}/{TMS}/tilejson.json",
                "type": "application/json",
                "title": f"{preset.title} of this {what}: TileJSON",
            }
        )
    return [*links, _wmts(base, what, list(presets))]


def _wmts(base: str, what: str, layers: list[str] | None) -> dict[str, Any]:
    link: dict[str, Any] = {
        "rel": "wmts",
        "href": f"{base}/WMTSCapabilities.xml",
        "type": "application/xml",
        "title": f"This {what} as WMTS for QGIS (one layer per preset)",
    }
    if layers:
        link["wmts:layer"] = layers
    return link


def tile_asset(item: Mapping[str, Any]) -> str | None:
    """The asset tiles are made from: the first with the `data` role, else the first GeoTIFF."""
    assets = item.get("assets") or {}
    for key, asset in assets.items():
        if "data" in (asset.get("roles") or []):
            return str(key)
    for key, asset in assets.items():
        if "image/tiff" in (asset.get("type") or ""):
            return str(key)
    return None


def _plain_links(base: str, asset: str) -> list[dict[str, Any]]:
    query = f"assets={quote(asset, safe='')}"
    return [
        {
            "rel": "xyz",
            "href": f"{base}/tiles/{TMS}/{{z}}/{{x}}/{{y}}.png?{query}",
            "type": "image/png",
            "title": "This scene: XYZ layer for QGIS",
        },
        {
            "rel": "tilejson",
            "href": f"{base}/{TMS}/tilejson.json?{query}",
            "type": "application/json",
            "title": "This scene: TileJSON",
        },
    ]


def item_map_links(tiler_url: str, item: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Map links of an item: its presets, or a plain rendering of its data asset; none when it
    has nothing to draw."""
    collection, item_id = quote(str(item["collection"]), safe=""), quote(str(item["id"]), safe="")
    base = f"{tiler_url.rstrip('/')}/collections/{collection}/items/{item_id}"
    if presets := derive_presets(item.get("assets") or {}):
        return _links(f"{base}/presets", presets, "scene")
    asset = tile_asset(item)
    return _plain_links(base, asset) if asset else []


def collection_map_links(tiler_url: str, collection: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Map links of a collection's mosaic (latest scene on top): per preset when its
    `item_assets` name the bands, else the WMTS document alone (the tiler finds the presets in
    the items themselves)."""
    base = f"{tiler_url.rstrip('/')}/collections/{quote(str(collection['id']), safe='')}/presets"
    if presets := derive_presets(collection.get("item_assets") or {}):
        return _links(base, presets, "collection")
    return [_wmts(base, "collection", None)]
