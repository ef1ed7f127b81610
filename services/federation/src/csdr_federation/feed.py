"""The change feed: pages of what changed on this node after a reader's cursor, as it is now.

Events come from the outbox the database writes in each change's own transaction
(csdr.item_events, csdr.collection_events; migrations 0004 and 0017). A page holds the events
after the cursor, in (txid, id) order, whose transaction id lies below the oldest transaction
still running (`pg_snapshot_xmin(pg_current_snapshot())`): every such transaction has committed
or rolled back, so no event can still appear before the new cursor, and a transaction that
commits late is served after it commits, never skipped (an `id > cursor` feed skips it). PostgreSQL
documents the snapshot functions for this purpose: "which transactions were committed between two
snapshots".

Each item or collection the page's events touch appears once (repeated changes coalesce), as it is
at serve time: an `upsert` inlining the item as the STAC API publishes it, or a `delete`. Only what
the reader's key may see is served, and only records whose origin is this node (a mirrored record
is never fed back); an item outside the reader's area, cloud cover or period becomes a `delete`
(the reader may hold an earlier version), and a policy change hiding a collection from the key a
`collection_delete`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import asyncpg

from csdr_catalog.downloads import AssetRoots, publish_assets
from csdr_federation.errors import CursorExpired, InvalidParameter
from csdr_federation.items import ROW_SQL, encode, hydrate_rows
from csdr_storage.store import S3Store

ORIGIN = "csdr:origin"
"""The property (items) and field (collections) naming the node a record comes from."""
NAVIGATION = {"self", "root", "parent", "collection", "items", "child", "next", "prev", "via"}
"""Links a STAC API writes for its own navigation: never served (each node writes its own)."""

# Both outboxes in one order; only transactions below the oldest running one (see the docstring).
# Each outbox is read in its index's order up to the limit, so a page reads its own events only.
# txid travels as text: asyncpg has no codec for xid8.
EVENTS_SQL = """
SELECT e.txid::text, e.id, e.type, e.collection, e.item_id FROM (
    (SELECT e.txid, e.id, e.type, e.collection, e.item_id
     FROM csdr.item_events e
     WHERE (e.txid, e.id) > ($1::text::xid8, $2::bigint)
       AND e.txid < pg_snapshot_xmin(pg_current_snapshot())
     ORDER BY e.txid, e.id LIMIT $3)
    UNION ALL
    (SELECT c.txid, c.id, c.type, c.collection, '' AS item_id
     FROM csdr.collection_events c
     WHERE (c.txid, c.id) > ($1::text::xid8, $2::bigint)
       AND c.txid < pg_snapshot_xmin(pg_current_snapshot())
     ORDER BY c.txid, c.id LIMIT $3)
) e
ORDER BY e.txid, e.id
LIMIT $3
"""

RETENTION_SQL = "SELECT through_txid::text, through_id FROM csdr.feed_retention"

# Servable events after a position, counted up to a cap: how far a reader is behind.
BEHIND_SQL = """
WITH horizon AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin)
SELECT count(*) FROM (
    SELECT 1 FROM csdr.item_events e, horizon h
    WHERE (e.txid, e.id) > ($1::text::xid8, $2::bigint) AND e.txid < h.xmin
    UNION ALL
    SELECT 1 FROM csdr.collection_events c, horizon h
    WHERE (c.txid, c.id) > ($1::text::xid8, $2::bigint) AND c.txid < h.xmin
    LIMIT $3
) behind
"""
BEHIND_CAP = 1_000_000

# The last position a page can reach now (see EVENTS_SQL).
HEAD_SQL = """
WITH horizon AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin)
SELECT e.txid::text, e.id FROM (
    SELECT i.txid, i.id FROM csdr.item_events i, horizon h WHERE i.txid < h.xmin
    UNION ALL
    SELECT c.txid, c.id FROM csdr.collection_events c, horizon h WHERE c.txid < h.xmin
) e
ORDER BY e.txid DESC, e.id DESC LIMIT 1
"""
MONTH_OF = "to_char(i.datetime AT TIME ZONE 'UTC', 'YYYY-MM')"

# A collection's items in the reader's area and period (and month, when given), as stored
# (csdr_federation.items merges them with their base items).
SELECTED_SQL = f"""
SELECT i.id, {MONTH_OF} AS month, {ROW_SQL}
FROM pgstac.items i
WHERE i.collection = $1
  AND ($2::float8[] IS NULL OR st_intersects(
        i.geometry, st_makeenvelope($2[1], $2[2], $2[3], $2[4], 4326)))
  AND ($3::text IS NULL OR st_intersects(i.geometry, st_setsrid(st_geomfromgeojson($3), 4326)))
  AND ($4::timestamptz IS NULL OR i.datetime >= $4)
  AND ($5::text IS NULL OR {MONTH_OF} = $5)
"""

COLLECTIONS_SQL = "SELECT id, content FROM pgstac.collections WHERE id = ANY($1::text[])"

# The current rows of the page's items that match the reader's area and period (the cloud cover
# is judged on the merged item). Each is looked up by its keys (a nested loop that prunes
# partitions at run time), not by joining the whole items table.
ITEMS_SQL = f"""
SELECT i.collection, i.id, {ROW_SQL}
FROM unnest($1::text[], $2::text[]) AS k(collection, id)
CROSS JOIN LATERAL (
    SELECT * FROM pgstac.items i WHERE i.collection = k.collection AND i.id = k.id LIMIT 1
) i
WHERE ($3::float8[] IS NULL OR st_intersects(
            i.geometry, st_makeenvelope($3[1], $3[2], $3[3], $3[4], 4326)))
  AND ($4::text IS NULL OR st_intersects(i.geometry, st_setsrid(st_geomfromgeojson($4), 4326)))
  AND ($5::timestamptz IS NULL OR i.datetime >= $5)
"""


@dataclass(frozen=True, order=True)
class Cursor:
    """A position in the feed: the (transaction id, event id) of the last event served."""

    txid: int = 0
    id: int = 0

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        """Read `<txid>.<id>`; the start of the feed when None."""
        if text is None or text == "":
            return cls()
        txid, _, event = text.partition(".")
        valid = all(p.isascii() and p.isdigit() and len(p) <= 20 for p in (txid, event))
        # xid8 and bigint bounds: beyond them the text was not handed out by this feed.
        if not valid or int(txid) >= 2**64 or int(event) >= 2**63:
            raise InvalidParameter(f"after: {text!r} is not a cursor this feed handed out")
        return cls(int(txid), int(event))

    def __str__(self) -> str:
        return f"{self.txid}.{self.id}"


@dataclass
class Selection:
    """What a reader mirrors: collections, an area (bbox or GeoJSON), a cloud cover, a period."""

    collections: frozenset[str] | None = None
    bbox: list[float] | None = None
    intersects: dict[str, Any] | None = None
    max_cloud: float | None = None
    since: datetime | None = None

    def wants(self, collection: str) -> bool:
        """Whether the reader asked for this collection."""
        return self.collections is None or collection in self.collections

    def cloud_ok(self, item: Mapping[str, Any]) -> bool:
        """Whether the item's cloud cover is within the reader's maximum (unknown is not)."""
        if self.max_cloud is None:
            return True
        cloud = (item.get("properties") or {}).get("eo:cloud_cover")
        return isinstance(cloud, int | float) and cloud <= self.max_cloud


@dataclass
class Page:
    """One page of the feed."""

    node: str
    catalog: str
    changes: list[dict[str, Any]]
    events: int
    next: Cursor
    at_head: bool
    behind: int = 0
    """Events still after `next` (all collections, before selection; counted up to a cap)."""

    def to_json(self) -> dict[str, Any]:
        """The page as the route answers it."""
        return {
            "node": self.node,
            "catalog": self.catalog,
            "changes": self.changes,
            "events": self.events,
            "next": str(self.next),
            "at_head": self.at_head,
            "behind": self.behind,
        }

    def encode(self) -> bytes:
        """The page as the route's JSON body."""
        return encode(self.to_json())


@dataclass
class _Touched:
    """What a page's events touched, each with the position of its last event."""

    items: dict[tuple[str, str], tuple[Cursor, bool]] = field(default_factory=dict)
    """(collection, id) -> (last position, whether its first event in the page was a creation)."""
    collections: dict[str, Cursor] = field(default_factory=dict)
    policies: set[str] = field(default_factory=set)


def content_hash(document: Mapping[str, Any]) -> str:
    """A digest of a record as published (sorted keys), equal on every node for equal content."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def item_url(catalog: str, collection: str, item_id: str) -> str:
    """The URL of an item on a node's STAC API."""
    return f"{catalog}/collections/{quote(collection, safe='')}/items/{quote(item_id, safe='')}"


def collection_url(catalog: str, collection: str) -> str:
    """The URL of a collection on a node's STAC API."""
    return f"{catalog}/collections/{quote(collection, safe='')}"


def month_digests(
    rows: list[tuple[str, str, str, str]],
) -> dict[tuple[str, str], dict[str, Any]]:
    """(collection, month) -> count and SHA-256 of the sorted `id hash` lines, from rows of
    (collection, month, id, content hash): the same on two nodes holding the same items."""
    lines: dict[tuple[str, str], list[str]] = {}
    for collection, month, item_id, item_hash in rows:
        lines.setdefault((collection, month), []).append(f"{item_id} {item_hash}")
    return {
        key: {
            "count": len(found),
            "digest": hashlib.sha256("\n".join(sorted(found)).encode()).hexdigest(),
        }
        for key, found in lines.items()
    }


def is_foreign(content: Mapping[str, Any], node: str) -> bool:
    """Whether a collection was mirrored from another node (its origin is not `node`)."""
    origin = content.get(ORIGIN)
    return origin is not None and origin != node


class Feed:
    """Builds pages for one node."""

    def __init__(
        self,
        node: str,
        catalog_url: str,
        asset_roots: Collection[str],
        bucket: S3Store | None = None,
    ) -> None:
        self.node = node
        self.catalog = catalog_url.rstrip("/")
        self.roots = AssetRoots(asset_roots, bucket)

    async def page(
        self,
        conn: asyncpg.Connection,
        after: Cursor,
        limit: int,
        visible: frozenset[str],
        selection: Selection,
    ) -> Page:
        """The page after `after` for a reader who may see `visible` and asked for `selection`."""
        retained = await conn.fetchrow(RETENTION_SQL)
        if retained is not None and after < Cursor(int(retained[0]), retained[1]):
            raise CursorExpired(
                f"events before {retained[0]}.{retained[1]} are no longer kept (retention);"
                " reconcile with GET /federation/digest, then read on from the cursor it gives"
            )
        rows = await conn.fetch(EVENTS_SQL, str(after.txid), after.id, limit)
        touched = _Touched()
        for txid, event_id, kind, collection, item_id in rows:
            position = Cursor(int(txid), event_id)
            if kind == "policy":
                touched.policies.add(collection)
                touched.collections[collection] = position
            elif kind == "collection":
                touched.collections[collection] = position
            else:
                key = (collection, item_id)
                first_created = touched.items[key][1] if key in touched.items else kind == "created"
                touched.items[key] = (position, first_created)
        next_cursor = Cursor(int(rows[-1][0]), rows[-1][1]) if rows else after
        changes = await self._changes(conn, touched, visible, selection)
        at_head = len(rows) < limit
        behind = 0
        if not at_head:
            behind = await conn.fetchval(
                BEHIND_SQL, str(next_cursor.txid), next_cursor.id, BEHIND_CAP
            )
        return Page(self.node, self.catalog, changes, len(rows), next_cursor, at_head, int(behind))

    async def head(self, conn: asyncpg.Connection) -> Cursor:
        """The position a reader is at once it has read everything servable now."""
        row = await conn.fetchrow(HEAD_SQL)
        retained = await conn.fetchrow(RETENTION_SQL)
        positions = [Cursor()]
        positions += [Cursor(int(r[0]), r[1]) for r in (row, retained) if r is not None]
        return max(positions)

    async def served_collections(
        self, conn: asyncpg.Connection, visible: frozenset[str], selection: Selection
    ) -> dict[str, dict[str, Any]]:
        """The collections this node feeds the reader: visible, its own, and asked for."""
        rows = await conn.fetch("SELECT id, content FROM pgstac.collections ORDER BY id")
        return {
            cid: content
            for cid, content in rows
            if cid in visible and selection.wants(cid) and not is_foreign(content, self.node)
        }

    async def _selected(
        self,
        conn: asyncpg.Connection,
        collection: str,
        selection: Selection,
        month: str | None = None,
    ) -> list[tuple[str, str, dict[str, Any]]]:
        rows = await conn.fetch(
            SELECTED_SQL,
            collection,
            selection.bbox,
            json.dumps(selection.intersects) if selection.intersects else None,
            selection.since,
            month,
        )
        items = await hydrate_rows(conn, [(collection, r["tag"], r["row"]) for r in rows])
        return [
            (r["id"], r["month"], item)
            for r, item in zip(rows, items, strict=True)
            if selection.cloud_ok(item)
        ]

    async def digest(
        self, conn: asyncpg.Connection, visible: frozenset[str], selection: Selection
    ) -> dict[str, Any]:
        """Counts and digests per collection and month of what the reader mirrors, and the feed
        position they were taken at (taken first: a later change is read from the feed again)."""
        cursor = await self.head(conn)
        rows = []
        for collection in await self.served_collections(conn, visible, selection):
            for item_id, month, item in await self._selected(conn, collection, selection):
                rows.append(
                    (collection, month, item_id, self.item_op(collection, item_id, item)["hash"])
                )
        digests = month_digests(rows)
        return {
            "node": self.node,
            "catalog": self.catalog,
            "cursor": str(cursor),
            "months": [
                {"collection": c, "month": m, **digests[(c, m)]} for c, m in sorted(digests)
            ],
        }

    async def month(
        self,
        conn: asyncpg.Connection,
        visible: frozenset[str],
        selection: Selection,
        collection: str,
        month: str,
    ) -> dict[str, Any]:
        """A collection (as a `collection` change) and its items of one month (`upsert`s)."""
        served = await self.served_collections(conn, visible, selection)
        if collection not in served:
            return {"node": self.node, "catalog": self.catalog, "changes": []}
        items = await self._selected(conn, collection, selection, month)
        changes = [self.collection_op(collection, served[collection])]
        changes += [self.item_op(collection, item_id, item) for item_id, _, item in items]
        return {"node": self.node, "catalog": self.catalog, "changes": changes}

    async def _changes(
        self,
        conn: asyncpg.Connection,
        touched: _Touched,
        visible: frozenset[str],
        selection: Selection,
    ) -> list[dict[str, Any]]:
        item_collections = {c for c, _ in touched.items}
        wanted = {c for c in item_collections | set(touched.collections) if selection.wants(c)}
        contents = dict(await conn.fetch(COLLECTIONS_SQL, sorted(wanted)))
        served = {
            c
            for c in wanted
            if c in visible and c in contents and not is_foreign(contents[c], self.node)
        }
        item_keys = [k for k in touched.items if k[0] in served]
        current = await self._current_items(conn, item_keys, selection)
        item_ops = []
        for key in sorted(item_keys, key=lambda k: touched.items[k][0]):
            collection, item_id = key
            item = current.get(key)
            if item is not None:
                item_ops.append(self.item_op(collection, item_id, item))
            elif not touched.items[key][1]:
                # Deleted, or no longer in the reader's selection: the reader may hold it. An item
                # whose first event here was its creation cannot be held by the reader yet.
                item_ops.append({"op": "delete", "collection": collection, "id": item_id})
        # A collection goes with the page when it changed or an item of it is upserted (the
        # reader may not have it yet: it existed before the feed began, or the reader is new).
        needed = set(touched.collections) | {
            c["collection"] for c in item_ops if c["op"] == "upsert"
        }
        collection_ops: list[dict[str, Any]] = []
        gone_ops: list[dict[str, Any]] = []
        for collection in sorted(wanted, key=lambda c: touched.collections.get(c, Cursor())):
            if collection in served:
                if collection in needed:
                    collection_ops.append(self.collection_op(collection, contents[collection]))
            elif collection in touched.collections and (
                collection not in contents
                or (collection in touched.policies and collection not in visible)
            ):
                # Deleted here, or hidden from this reader by a policy change. A foreign
                # collection's changes are never fed (no echo), nor is a hidden one's content.
                gone_ops.append({"op": "collection_delete", "collection": collection})
        return collection_ops + item_ops + gone_ops

    async def _current_items(
        self, conn: asyncpg.Connection, keys: list[tuple[str, str]], selection: Selection
    ) -> dict[tuple[str, str], dict[str, Any]]:
        if not keys:
            return {}
        rows = await conn.fetch(
            ITEMS_SQL,
            [c for c, _ in keys],
            [i for _, i in keys],
            selection.bbox,
            json.dumps(selection.intersects) if selection.intersects else None,
            selection.since,
        )
        items = await hydrate_rows(conn, [(r["collection"], r["tag"], r["row"]) for r in rows])
        return {
            (r["collection"], r["id"]): item
            for r, item in zip(rows, items, strict=True)
            if selection.cloud_ok(item)
        }

    def collection_op(self, collection: str, content: dict[str, Any]) -> dict[str, Any]:
        """A `collection` change: the collection as this node holds it."""
        return {
            "op": "collection",
            "collection": collection,
            "href": collection_url(self.catalog, collection),
            "hash": content_hash(content),
            "content": content,
        }

    def item_op(self, collection: str, item_id: str, item: dict[str, Any]) -> dict[str, Any]:
        """An `upsert` change: the item as the STAC API publishes it, with its content hash."""
        # Local files become the catalog's download URLs, exactly as the STAC API publishes them;
        # stored navigation links go, as the STAC API replaces them.
        publish_assets(item, self.catalog + "/", self.roots)
        if isinstance(item.get("links"), list):
            item["links"] = [
                link
                for link in item["links"]
                if not (isinstance(link, dict) and link.get("rel") in NAVIGATION)
            ]
        return {
            "op": "upsert",
            "collection": collection,
            "id": item_id,
            "href": item_url(self.catalog, collection, item_id),
            "hash": content_hash(item),
            "item": item,
        }
