"""pgSTAC items in bulk, merged and split in Python: read as the STAC API serves them (a stored
row merged with its base item by hydraters, as csdr_catalog.features does), written as pypgstac's
Loader writes them (split from the collection's current base item in Python, then pgSTAC's own
partition check and its upsert: rows that changed replaced, the others left alone).

pgSTAC's SQL merge and split (`content_hydrate`, `content_dehydrate`) recurse through every key
of every item in SQL; a feed page or a mirrored page holds hundreds of items. What the write
reproduces of pgSTAC's `items_staging_upsert` trigger is listed in docs/upstream.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg
import orjson
from hydraters import dehydrate, hydrate

from csdr_catalog.item_search import BASE_ITEM_SQL

BASE_ITEM_TAG = "pgstac:base_item"
"""The key of a stored row naming the base item it was split from (pgSTAC >= 0.10)."""

# A stored row as content_hydrate starts it (id, geometry, collection, type, then the stored
# content, tag included), as JSON text, and its base item's tag.
ROW_SQL = (
    "(jsonb_build_object('id', i.id, 'geometry', st_asgeojson(i.geometry, 20)::jsonb,"
    " 'collection', i.collection, 'type', 'Feature') || i.content)::text AS row,"
    f" i.content ->> '{BASE_ITEM_TAG}' AS tag"
)
# The base item of each (collection, tag), as content_hydrate picks it (BASE_ITEM_SQL).
BASES_SQL = (
    f"SELECT b.collection, b.tag, {BASE_ITEM_SQL} AS base"
    " FROM unnest($1::text[], $2::text[]) AS b(collection, tag)"
)
# The base item a new row of each collection is split from, and its tag (NULL before the
# collection's first edit), as pypgstac's Loader asks it.
CURRENT_BASES_SQL = """
SELECT c.id, b.base_item_id, b.base_item
FROM pgstac.collections c, pgstac.current_base_item(c.id) b WHERE c.id = ANY($1::text[])
"""
# The page's rows, as content_dehydrate makes them from the full items ($2) and the content
# split here ($1): pgSTAC's own geometry and date range of an item (stac_datetime and
# stac_end_datetime are the two ends of stac_daterange, asked once here).
STAGE_SQL = """
CREATE TEMP TABLE csdr_mirror_rows ON COMMIT DROP AS
SELECT w.item ->> 'id' AS id, pgstac.stac_geom(w.item) AS geometry,
       w.item ->> 'collection' AS collection, lower(d.range) AS datetime,
       upper(d.range) AS end_datetime, r.content::jsonb AS content, NULL::jsonb AS private
FROM unnest($1::text[], $2::text[]) AS r(content, whole)
CROSS JOIN LATERAL (SELECT r.whole::jsonb AS item) AS w
CROSS JOIN LATERAL (SELECT pgstac.stac_daterange(w.item) AS range) AS d
"""
# items_staging_triggerfunc: the partitions the rows need, in a fixed order (check_partition
# holds DDL and row locks until commit), bucketed in UTC as pgstac.partition_name buckets.
PARTITIONS_SQL = """
SELECT count(pgstac.check_partition(collection, dtrange, edtrange)) FROM (
    SELECT r.collection,
           coalesce(date_trunc(c.partition_trunc::text, r.datetime, 'UTC'), '-infinity') AS d,
           tstzrange(min(r.datetime), max(r.datetime), '[]') AS dtrange,
           tstzrange(min(r.end_datetime), max(r.end_datetime), '[]') AS edtrange
    FROM csdr_mirror_rows r JOIN pgstac.collections c ON c.id = r.collection
    GROUP BY 1, 2
    ORDER BY 1, 2
) ordered
"""
# items_staging_upsert: rows that changed are locked in (collection, id) order and deleted, then
# every row is inserted unless it is there (unchanged): an unchanged item is not written at all.
# The changed rows are found by their keys (a nested loop that prunes partitions at run time,
# where a join would read the whole items table for every page), and only they are locked.
CHANGED_SQL = """
SELECT s.collection, s.id FROM csdr_mirror_rows s
CROSS JOIN LATERAL (
    SELECT 1 FROM pgstac.items o
    WHERE o.collection = s.collection AND o.id = s.id
      AND (o.geometry, o.datetime, o.end_datetime, o.content, o.private)
          IS DISTINCT FROM (s.geometry, s.datetime, s.end_datetime, s.content, s.private)
    LIMIT 1
) o
"""
REPLACE_SQL = """
WITH locked AS (
    SELECT o.collection, o.id
    FROM unnest($1::text[], $2::text[]) AS k(collection, id)
    JOIN pgstac.items o ON o.collection = k.collection AND o.id = k.id
    ORDER BY o.collection, o.id
    FOR UPDATE OF o
)
DELETE FROM pgstac.items i USING locked l WHERE i.collection = l.collection AND i.id = l.id
"""
INSERT_SQL = """
INSERT INTO pgstac.items (id, geometry, collection, datetime, end_datetime, content, private)
SELECT id, geometry, collection, datetime, end_datetime, content, private FROM csdr_mirror_rows
ON CONFLICT DO NOTHING
"""
DROP_SQL = "DROP TABLE IF EXISTS pg_temp.csdr_mirror_rows"
# Keys content_dehydrate leaves out of the stored content (they are columns, or constant).
ROW_KEYS = ("id", "geometry", "collection", "type", BASE_ITEM_TAG)


async def hydrate_rows(
    conn: asyncpg.Connection, rows: Sequence[tuple[str, str | None, str]]
) -> list[dict[str, Any]]:
    """Items as the STAC API serves them from (collection, tag, row) tuples, `row` and `tag` as
    ROW_SQL selects them; each base item is asked once."""
    keys = list({(collection, tag) for collection, tag, _ in rows})
    bases: dict[tuple[str, str | None], bytes] = {}
    if keys:
        found = await conn.fetch(BASES_SQL, [c for c, _ in keys], [t for _, t in keys])
        for collection, tag, base in found:
            # As the catalog: a base item's null fields (no item_assets) are not merged. Kept as
            # JSON: hydrate shares the base's values with the item, so each item gets its own.
            kept = {k: v for k, v in (base or {}).items() if v is not None}
            bases[(collection, tag)] = orjson.dumps(kept)
    items = []
    for collection, tag, row in rows:
        content = orjson.loads(row)
        content.pop(BASE_ITEM_TAG, None)
        base = orjson.loads(bases[(collection, tag)])
        items.append(hydrate(base, content, strip_unmatched_markers=True))
    return items


def encode(document: Any) -> bytes:
    """A document as compact JSON (orjson; the standard library for integers beyond 64 bits,
    which orjson refuses)."""
    try:
        return orjson.dumps(document)
    except TypeError:
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


async def upsert(conn: asyncpg.Connection, items: Iterable[dict[str, Any]]) -> None:
    """Write items (whole, as the STAC API serves them) in the caller's transaction, as
    pgstac.upsert_items does: a changed item replaced (deleted and inserted, which this node's
    outbox records as one `updated`), an unchanged one left alone, partitions made as needed.
    The items are used up: each is split into its stored content in place."""
    items = list(items)
    if not items:
        return
    collections = sorted({item["collection"] for item in items})
    found = await conn.fetch(CURRENT_BASES_SQL, collections)
    current = {cid: (tag, base or {}) for cid, tag, base in found}
    contents, wholes = [], []
    for item in items:
        tag, base = current.get(item["collection"], (None, {}))
        wholes.append(encode(_located(item)).decode())
        content = dehydrate(base, item)  # in place: the item becomes its stored content
        for key in ROW_KEYS:
            content.pop(key, None)
        if tag is not None:
            content[BASE_ITEM_TAG] = tag
        contents.append(encode(content).decode())
    await conn.execute(DROP_SQL)
    await conn.execute(STAGE_SQL, contents, wholes)
    await conn.execute(PARTITIONS_SQL)
    if changed := await conn.fetch(CHANGED_SQL):
        await conn.execute(REPLACE_SQL, [r[0] for r in changed], [r[1] for r in changed])
    await conn.execute(INSERT_SQL)


def _located(item: dict[str, Any]) -> dict[str, Any]:
    """What pgSTAC reads an item's row columns from (stac_geom, stac_datetime): its id,
    collection, geometry or bbox, and the dates of its properties."""
    located: dict[str, Any] = {
        key: item[key] for key in ("id", "collection", "geometry", "bbox") if key in item
    }
    properties = item.get("properties") or {}
    located["properties"] = {
        key: properties[key]
        for key in ("datetime", "start_datetime", "end_datetime")
        if key in properties
    }
    return located
