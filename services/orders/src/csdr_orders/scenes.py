"""The scenes an order names, by item ids or by a STAC search, as the caller may see them: each
with whether it is online (a COG to deliver now) or offline (produced on order; the node's one
rule, csdr.scene_online: csdr_storage.availability), and the platform and instrument the usage
statistics are grouped by."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from csdr_orders.errors import InvalidOrder

SEARCH_KEYS = frozenset(
    {"collections", "ids", "bbox", "intersects", "datetime", "filter", "filter-lang", "query"}
)

SCENES_SQL = """
SELECT i.collection, i.id, csdr.scene_online(i.content) AS online,
       i.content->'properties'->>'platform' AS platform,
       i.content->'properties'->'instruments'->>0 AS instrument,
       EXISTS (SELECT 1 FROM csdr.offline_packages p
               WHERE p.collection = i.collection AND p.item_id = i.id) AS archived
FROM pgstac.items i
JOIN unnest($1::text[], $2::text[]) AS want (collection, id)
  ON i.collection = want.collection AND i.id = want.id
"""


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


async def by_ids(
    conn: asyncpg.Connection, refs: list[tuple[str, str]], visible: frozenset[str]
) -> list[Scene]:
    """The scenes `refs` (collection, id) name, in order and without repeats; InvalidOrder
    naming those the caller cannot order (missing, invisible, or offline with no package)."""
    refs = list(dict.fromkeys(refs))
    rows = await conn.fetch(SCENES_SQL, [c for c, _ in refs], [i for _, i in refs])
    found = {(r["collection"], r["id"]): r for r in rows if r["collection"] in visible}
    missing = [f"{c}/{i}" for c, i in refs if (c, i) not in found]
    if missing:
        raise InvalidOrder(
            f"items: no item {', '.join(missing[:10])} on this node", missing=missing[:100]
        )
    scenes = []
    unproducible = []
    for ref in refs:
        row = found[ref]
        if not row["online"] and not row["archived"]:
            unproducible.append(f"{ref[0]}/{ref[1]}")
        scenes.append(Scene(ref[0], ref[1], row["online"], row["platform"], row["instrument"]))
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


async def by_search(
    conn: asyncpg.Connection, search: dict[str, Any], visible: frozenset[str], max_items: int
) -> list[Scene]:
    """The scenes a STAC search (item search body: collections, bbox, datetime, filter, ...)
    finds among the collections the caller may see; at most `max_items`."""
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
    return await by_ids(conn, [(f["collection"], f["id"]) for f in features], visible)
