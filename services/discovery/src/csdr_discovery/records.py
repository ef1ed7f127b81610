"""The records discovery serves, read live from pgSTAC at each request: the collections an
anonymous caller may see, searched with pgSTAC's own collection search (the one behind the STAC
API's `/collections`), and the stamps of migration 0016 that order them for OAI-PMH.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from fastapi import Request

from csdr_access import ANONYMOUS


async def visible(request: Request, pool: asyncpg.Pool) -> frozenset[str]:
    """The collections an anonymous caller may see (csdr_access's rule, cached `access_ttl_s`)."""
    return await request.app.state.access.visible_async(pool, ANONYMOUS)


@dataclass(frozen=True)
class Page:
    """One page of a collection search."""

    matched: int
    collections: list[dict[str, Any]]


async def search(
    conn: asyncpg.Connection | asyncpg.Pool,
    shown: frozenset[str],
    criteria: dict[str, Any],
    limit: int,
    offset: int,
    sortby: list[dict[str, str]] | None = None,
) -> Page:
    """Collections among `shown` that meet `criteria` (pgSTAC search keys: q, bbox, datetime,
    filter as CQL2 JSON, ids), ordered by `sortby` (pgSTAC's form) then id; `limit` 0 counts
    only."""
    ids = sorted(shown & set(criteria["ids"])) if "ids" in criteria else sorted(shown)
    if not ids:  # pgSTAC reads an empty `ids` as "any id"
        return Page(0, [])
    order = [*(sortby or []), {"field": "id", "direction": "asc"}]  # id: a stable page order
    body: dict[str, Any] = {**criteria, "ids": ids, "sortby": order}
    if "filter" in body:
        body["filter-lang"] = "cql2-json"
    matched = await conn.fetchval("SELECT pgstac.collection_search_matched($1::jsonb)", body)
    if limit <= 0 or offset >= matched:
        return Page(matched, [])
    rows = await conn.fetch(
        "SELECT c FROM pgstac.collection_search_rows($1::jsonb) c",
        {**body, "limit": limit, "offset": offset},
    )
    return Page(matched, [r["c"] for r in rows])


@dataclass(frozen=True)
class Change:
    """A collection's discovery record as of its last change: its content, or deleted."""

    collection: str
    changed_at: datetime
    content: dict[str, Any] | None  # None: removed, or hidden from anonymous callers


CHANGES_SQL = """
SELECT d.collection, d.changed_at,
       CASE WHEN NOT d.removed AND d.collection = ANY ($1::text[]) THEN c.content END AS content
FROM csdr.discovery_changes d
LEFT JOIN pgstac.collections c ON c.id = d.collection
WHERE d.exposed
  AND ($2::timestamptz IS NULL OR d.changed_at >= $2)
  AND ($3::timestamptz IS NULL OR d.changed_at < $3)
  AND ($4::timestamptz IS NULL OR (d.changed_at, d.collection) > ($4, $5::text))
  AND ($6::text IS NULL OR d.collection = $6)
ORDER BY d.changed_at, d.collection
LIMIT $7
"""


async def changes(
    conn: asyncpg.Connection | asyncpg.Pool,
    shown: frozenset[str],
    since: datetime | None = None,
    until: datetime | None = None,
    after: tuple[datetime, str] | None = None,
    collection: str | None = None,
    limit: int = 100,
) -> list[Change]:
    """Collections ever shown to anonymous callers, by time of last change (from `since`
    included to `until` excluded; after the key `after`); those not in `shown` as deleted."""
    after_at, after_id = after if after else (None, None)
    rows = await conn.fetch(
        CHANGES_SQL, sorted(shown), since, until, after_at, after_id, collection, limit
    )
    return [Change(r["collection"], r["changed_at"], r["content"]) for r in rows]


async def earliest_change(conn: asyncpg.Connection | asyncpg.Pool) -> datetime | None:
    """The oldest stamp a harvest can see (OAI-PMH Identify's earliestDatestamp)."""
    return await conn.fetchval("SELECT min(changed_at) FROM csdr.discovery_changes WHERE exposed")
