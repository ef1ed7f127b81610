"""What a mirrored record looks like on this node: the origin's record, same collection and item
ids, with `csdr:origin` naming the origin node, a `via` link to the origin's record (CEOS STAC best
practice REC-3350), no navigation links of the origin (this node's STAC API writes its own `self`,
`parent`, `root`), and this node among the collection's providers as a host. An asset copied here
(csdr_federation.assets) reads the local copy, the origin's href kept as an alternate (REC-6360).

Applying the same origin record twice gives the same mirror, so a repeated page changes nothing;
`origin_form` undoes it (the feed serves no navigation links, so there are none to restore).
"""

from __future__ import annotations

import copy
from typing import Any

from csdr_federation.feed import NAVIGATION, ORIGIN

ALTERNATE_EXTENSION = "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json"


def _links(links: Any, via: str) -> list[dict[str, Any]]:
    kept = [
        link
        for link in (links if isinstance(links, list) else [])
        if isinstance(link, dict) and link.get("rel") not in NAVIGATION
    ]
    return [*kept, {"rel": "via", "href": via, "type": "application/json"}]


def mirror_item(item: dict[str, Any], origin: str, via: str) -> dict[str, Any]:
    """The local copy of an origin's item. It shares values with `item` but for those this
    module changes in place (assets, extensions: `point_at_copy`), which are its own."""
    mirrored = dict(item)
    mirrored["properties"] = {**(item.get("properties") or {}), ORIGIN: origin}
    mirrored["links"] = _links(item.get("links"), via)
    if isinstance(item.get("assets"), dict):
        mirrored["assets"] = {key: _own(asset) for key, asset in item["assets"].items()}
    if isinstance(item.get("stac_extensions"), list):
        mirrored["stac_extensions"] = list(item["stac_extensions"])
    return mirrored


def _own(asset: Any) -> Any:
    """An asset whose fields `point_at_copy` changes are not shared."""
    if not isinstance(asset, dict):
        return asset
    owned = dict(asset)
    if isinstance(owned.get("alternate"), dict):
        owned["alternate"] = dict(owned["alternate"])
    return owned


def origin_form(item: dict[str, Any]) -> dict[str, Any]:
    """A mirrored item as its origin published it (mirror_item and point_at_copy undone), for
    comparing digests."""
    origin = (item.get("properties") or {}).get(ORIGIN)
    properties = {k: v for k, v in (item.get("properties") or {}).items() if k != ORIGIN}
    links = [link for link in item.get("links") or [] if link.get("rel") != "via"]
    published = {**item, "properties": properties, "links": links}
    if origin is not None and item.get("assets"):
        published["assets"] = copy.deepcopy(item["assets"])
        if "stac_extensions" in item:
            published["stac_extensions"] = list(item["stac_extensions"])
        origin_assets(published, origin)
    return published


def mirror_collection(
    content: dict[str, Any], origin: str, via: str, host: str, host_url: str
) -> dict[str, Any]:
    """The local copy of an origin's collection, this node added as a host provider."""
    mirrored = copy.deepcopy(content)
    mirrored[ORIGIN] = origin
    mirrored["links"] = _links(mirrored.get("links"), via)
    providers = [
        p
        for p in (mirrored.get("providers") or [])
        if not (isinstance(p, dict) and p.get("name") == host and "host" in (p.get("roles") or []))
    ]
    mirrored["providers"] = [*providers, {"name": host, "roles": ["host"], "url": host_url}]
    return mirrored


def point_at_copy(item: dict[str, Any], key: str, path: str, origin_node: str) -> None:
    """Make the item's asset read the local copy, the origin's href kept as an alternate."""
    asset = item["assets"][key]
    alternate = asset.setdefault("alternate", {})
    alternate[origin_node] = {"href": asset["href"], "title": f"At its origin, {origin_node}"}
    asset["href"] = path
    extensions = item.setdefault("stac_extensions", [])
    if ALTERNATE_EXTENSION not in extensions:
        extensions.append(ALTERNATE_EXTENSION)


def point_at_origin(item: dict[str, Any], key: str, origin_node: str) -> None:
    """Undo `point_at_copy` for one asset, in place: it reads its origin again."""
    asset = item["assets"][key]
    alternate = asset.get("alternate")
    if isinstance(alternate, dict) and origin_node in alternate:
        asset["href"] = alternate.pop(origin_node)["href"]
        if not alternate:
            del asset["alternate"]
    copied = any(
        isinstance(other, dict)
        and isinstance(other.get("alternate"), dict)
        and origin_node in other["alternate"]
        for other in item["assets"].values()
    )
    extensions = item.get("stac_extensions")
    if not copied and isinstance(extensions, list) and ALTERNATE_EXTENSION in extensions:
        extensions.remove(ALTERNATE_EXTENSION)
        if not extensions:
            del item["stac_extensions"]


def origin_assets(item: dict[str, Any], origin_node: str) -> None:
    """Undo `point_at_copy` for every asset, in place: the assets as the origin serves them."""
    copied = False
    for asset in (item.get("assets") or {}).values():
        alternate = asset.get("alternate") if isinstance(asset, dict) else None
        if isinstance(alternate, dict) and origin_node in alternate:
            asset["href"] = alternate.pop(origin_node)["href"]
            if not alternate:
                del asset["alternate"]
            copied = True
    extensions = item.get("stac_extensions")
    if copied and isinstance(extensions, list) and ALTERNATE_EXTENSION in extensions:
        extensions.remove(ALTERNATE_EXTENSION)
        if not extensions:
            del item["stac_extensions"]
