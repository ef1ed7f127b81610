"""What a mirrored record looks like on this node: the origin's record, same collection and item
ids, with `csdr:origin` naming the origin node, a `via` link to the origin's record (CEOS STAC best
practice REC-3350), no navigation links of the origin (this node's STAC API writes its own `self`,
`parent`, `root`), and this node among the collection's providers as a host.

Applying the same origin record twice gives the same mirror, so a repeated page changes nothing;
`origin_form` undoes it (navigation links the origin stored are not restored: such an item's
month is listed again at each reconcile, and its re-apply changes nothing).
"""

from __future__ import annotations

import copy
from typing import Any

from csdr_federation.feed import ORIGIN

# Links the origin's API wrote for its own navigation; ours writes them for this node.
NAVIGATION = {"self", "root", "parent", "collection", "items", "child", "next", "prev", "via"}


def _links(links: Any, via: str) -> list[dict[str, Any]]:
    kept = [
        link
        for link in (links if isinstance(links, list) else [])
        if isinstance(link, dict) and link.get("rel") not in NAVIGATION
    ]
    return [*kept, {"rel": "via", "href": via, "type": "application/json"}]


def mirror_item(item: dict[str, Any], origin: str, via: str) -> dict[str, Any]:
    """The local copy of an origin's item."""
    mirrored = copy.deepcopy(item)
    mirrored["properties"] = {**(mirrored.get("properties") or {}), ORIGIN: origin}
    mirrored["links"] = _links(mirrored.get("links"), via)
    return mirrored


def origin_form(item: dict[str, Any]) -> dict[str, Any]:
    """A mirrored item as its origin published it (mirror_item undone), for comparing digests."""
    properties = {k: v for k, v in (item.get("properties") or {}).items() if k != ORIGIN}
    links = [link for link in item.get("links") or [] if link.get("rel") != "via"]
    return {**item, "properties": properties, "links": links}


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
