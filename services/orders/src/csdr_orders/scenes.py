"""The scenes an order names, by item ids or by a STAC search, as the caller may see them: each
with whether it is online (a COG to deliver now) or offline (produced on order; the node's one
rule, csdr.scene_online: csdr_storage.availability), and the platform and instrument the usage
statistics are grouped by."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from csdr_orders.errors import InvalidOrder
from csdr_storage.availability import ORDER_STATUS, is_online

SEARCH_KEYS = frozenset(
    {"collections", "ids", "bbox", "intersects", "datetime", "filter", "filter-lang", "query"}
)


ONLINE_SQL = """
SELECT i.collection, i.id, csdr.scene_online(i.content) AS online
FROM pgstac.items i
JOIN unnest($1::text[], $2::text[]) AS want (collection, id)
  ON i.collection = want.collection AND i.id = want.id
"""


@dataclass(frozen=True)
class Scene:
    """One orderable scene."""

    collection: str
    item_id: str
    online: bool
    platform: str | None
    instrument: str | None


def unique(refs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (collection, id) references in order, without repeats."""
    return list(dict.fromkeys(refs))


def checked(
    refs: list[tuple[str, str]], row: Mapping[str, Any], visible: frozenset[str]
) -> list[Scene]:
    """The scenes `refs` name, from a row of arrays (csdr.order_lookup's: collections, ids,
    order_statuses, platforms, instruments, archived; NULL when none is found); InvalidOrder
    naming those the caller cannot order (missing, invisible, or offline with no package)."""
    columns = ("collections", "ids", "order_statuses", "platforms", "instruments", "archived")
    found = {
        (c, i): (status, platform, instrument, archived)
        for c, i, status, platform, instrument, archived in zip(
            *(row[k] or () for k in columns), strict=True
        )
        if c in visible
    }
    missing = [f"{c}/{i}" for c, i in refs if (c, i) not in found]
    if missing:
        raise InvalidOrder(
            f"items: no item {', '.join(missing[:10])} on this node", missing=missing[:100]
        )
    scenes = []
    unproducible = []
    for ref in refs:
        status, platform, instrument, archived = found[ref]
        online = is_online({ORDER_STATUS: status})
        if not online and not archived:
            unproducible.append(f"{ref[0]}/{ref[1]}")
        scenes.append(Scene(ref[0], ref[1], online, platform, instrument))
    if unproducible:
        raise InvalidOrder(
            f"items: {', '.join(unproducible[:10])} offline, and this node holds no package to"
            " produce them from"
        )
    return scenes


async def scenes_online(
    conn: asyncpg.Connection, refs: list[tuple[str, str]]
) -> dict[tuple[str, str], bool]:
    """Whether each scene `refs` (collection, id) names is online now; a missing one is left
    out."""
    rows = await conn.fetch(ONLINE_SQL, [c for c, _ in refs], [i for _, i in refs])
    return {(r["collection"], r["id"]): r["online"] for r in rows}


async def search_refs(
    conn: asyncpg.Connection, search: dict[str, Any], visible: frozenset[str], max_items: int
) -> list[tuple[str, str]]:
    """The (collection, id) of the scenes a STAC search (item search body: collections, bbox,
    datetime, filter, ...) finds among the collections the caller may see; at most
    `max_items`."""
    unknown = sorted(set(search) - SEARCH_KEYS)
    if unknown:
        raise InvalidOrder(
            f"search: {', '.join(unknown)} not allowed here; use {', '.join(sorted(SEARCH_KEYS))}"
        )
    collections = search.get("collections")
    if collections is None:
        collections = sorted(visible)
    elif not isinstance(collections, list) or not all(isinstance(c, str) for c in collections):
        raise InvalidOrder("search.collections: a list of collection ids")
    hidden = [c for c in collections if c not in visible]
    if hidden:
        raise InvalidOrder(f"search.collections: no collection {', '.join(hidden)} on this node")
    if not collections:
        return []
    body = {
        **search,
        "collections": collections,
        "limit": max_items + 1,
        "fields": {"include": ["id", "collection"], "exclude": ["geometry", "assets", "links"]},
        "conf": {"nohydrate": True},
    }
    page = await conn.fetchval("SELECT pgstac.search($1::text::jsonb)", json.dumps(body))
    features = (page or {}).get("features") or []
    if len(features) > max_items:
        raise InvalidOrder(
            f"search: more than {max_items} scenes match; narrow it (an order holds at most"
            f" {max_items})"
        )
    return [(f["collection"], f["id"]) for f in features]
