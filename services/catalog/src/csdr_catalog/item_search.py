"""Item search in SQL composed from pgSTAC's own pieces: the page `pgstac.search()` would answer
(the same items in the same order, formatted as its `format_item` formats them, the same
`next:`/`prev:` paging tokens, numberMatched when pgSTAC's `context` setting asks for it) without
the work `search()` repeats on every call. Measured at a million items by
tests/bench/bench_catalog.py:

- `search()` derives a WHERE and an ORDER BY clause from the search in plpgsql each time
  (`stac_search_to_where`, `sort_sqlorderby`: 3-6 ms here). They depend on the search without its
  token, limit and fields (the ORDER BY on its sortby and collections alone), and on pgSTAC's
  queryables and settings, so they are asked of pgSTAC once and kept, tagged with the
  generation of those two tables (migration 0012). Every page reads the generation in the same
  statement as its rows: clauses of an older generation are asked again and the page read again
  with them.
- `search_rows()` splits a datetime-sorted search into one query per partition range found by an
  EXPLAIN (`chunker`), each planned anew (2-5 ms per year partition). One query with the same
  WHERE, ORDER BY and LIMIT returns the same rows: the ranges are contiguous, cover every
  partition the WHERE can reach, and are walked in the sort's order, so the concatenation of the
  chunks' rows is the single query's order.
- `format_item` runs plpgsql for every item (a setting read, the base item looked up and sent
  with each item: ~1 ms of a 10-item page). The same item is made in plain SQL from the same
  pieces (`include_field`, `collection_base_item`), each base item once per page.
- The query's text is the same each time a search's first page is asked again, so asyncpg's
  statement cache keeps it prepared and PostgreSQL reuses its plan (a statement without
  parameters is planned once per connection; it is planned again when a partition or index
  changes).

Searches naming `ids` (single item reads) are composed the same way but their clauses are not
kept: each is asked once, and would only push the searches that are asked again out of the cache.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

import orjson
from asyncpg import Connection
from stac_fastapi.types.errors import InvalidQueryParameter

CACHE_SIZE = 4096
DEFAULT_LIMIT = 10  # pgstac.search_limit's default

# What pgSTAC's search_query() derives from a search (search.hash aside), its context and
# timing settings, each only when asked for ($2, $3, $4), and the generation of the queryables
# and settings they are made from (see ItemSearch._clauses).
PIECES_SQL = """
SELECT (SELECT generation FROM csdr.search_generation) AS generation,
       CASE WHEN $2 THEN pgstac.stac_search_to_where(s) END AS "where",
       CASE WHEN $3 THEN pgstac.sort_sqlorderby(
           s, false, '{collection,id}', pgstac.to_text_array(s->'collections')) END AS orderby,
       CASE WHEN $4 THEN pgstac.context(s->'conf') END AS context,
       CASE WHEN $4 THEN pgstac.get_setting_bool('timing', s->'conf') END AS timing
FROM (SELECT $1::text::jsonb AS s) AS search
"""

# search()'s reading of a token: the item it names (raising as search() raises for a malformed
# token or a missing item) and the condition that starts the page after (or before) it.
TOKEN_SQL = """
SELECT t.prev, (t.item).collection, (t.item).id,
       pgstac.get_token_filter($1::text::jsonb, t.item, t.prev, false,
                               pgstac.to_text_array($2::text::jsonb))
FROM pgstac.get_token_record($3::text) AS t
"""

# search()'s order for a page before a `prev:` token; asked only then (2 ms of pgSTAC's time).
REVERSE_ORDERBY_SQL = """
SELECT pgstac.sort_sqlorderby(s, true, '{collection,id}', pgstac.to_text_array(s->'collections'))
FROM (SELECT $1::text::jsonb AS s) AS search
"""
COLLECTION_TYPE_SQL = "SELECT content->>'type' FROM pgstac.collections WHERE id = $1"
WHERE_STATS_SQL = (
    "SELECT coalesce(total_count, estimated_count)"
    " FROM pgstac.where_stats($1::text, false, $2::text::jsonb)"
)


@dataclass(frozen=True)
class Clauses:
    """What pgSTAC derives from a search, under one generation of its queryables and settings."""

    generation: int
    where: str
    orderby: str
    context: str | None
    timing: bool
    reverse_orderby: str | None = None
    """Asked of pgSTAC the first time a `prev:` token needs it."""


@dataclass
class Page:
    """One page of a search, as `pgstac.search()` answers it."""

    features: list[dict[str, Any]]
    next: str | None
    """The next page's token without its `next:` prefix, as pgSTAC's `next` link carries it."""
    prev: str | None
    """The previous page's token without its `prev:` prefix."""
    number_matched: int | None = None
    """Present when pgSTAC's context setting is on (`numberMatched`)."""
    timing_ms: float | None = None
    """Present when pgSTAC's timing setting is on (`timing`)."""
    collection_type: str | None = None
    """The `type` of the collection asked for with `collection_type_of` (None: no such row)."""


@dataclass(frozen=True)
class _Token:
    prev: bool
    collection: str
    id: str
    where: str
    text: str


def sql_literal(text: str) -> str:
    """`text` as an SQL string literal (standard_conforming_strings, PostgreSQL's default)."""
    return "'" + text.replace("'", "''") + "'"


def page_token(collection: str, item_id: str) -> str:
    """pgstac.page_token: each side the hex of its UTF-8 bytes, joined by a colon."""
    return f"{collection.encode().hex()}:{item_id.encode().hex()}"


def search_limit(search: dict[str, Any]) -> int:
    """The page size pgstac.search_limit reads; 400 where it would raise."""
    limit = search.get("limit", DEFAULT_LIMIT)
    if limit is None:
        return DEFAULT_LIMIT
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= 2147483647:
        raise InvalidQueryParameter(f"Invalid limit {limit}: must be a non-negative integer")
    return limit


# An item as pgstac.content_nonhydrated (search()'s format_item, not hydrated) makes it, without
# the base item: the geometry only when the Fields allow it (include_field of constant arguments
# is folded when the statement is planned). ST_AsGeoJSON is costly, so PostgreSQL evaluates the
# whole expression above the sort and limit, on the page's rows only (make_sort_input_target).
ITEM_SQL = (
    "jsonb_build_object('id', items.id, 'geometry',"
    " CASE WHEN pgstac.include_field('geometry', {fields}::jsonb)"
    " THEN ST_AsGeoJSON(items.geometry, 20)::jsonb END,"
    " 'collection', items.collection, 'type', 'Feature') || items.content"
)

# The base item content_nonhydrated adds to an item of `collection` tagged `tag` (its
# `pgstac:base_item`): collection_base_item for an untagged item or a well-formed tag, else the
# collection's current base item. Asked once per distinct (collection, tag) of a page, where
# format_item asks once per item (and sends it with every item).
BASE_ITEM_SQL = (
    "coalesce("
    "CASE WHEN b.tag IS NULL OR b.tag ~ '^\\s*\\d{1,9}\\s*$'"
    " THEN pgstac.collection_base_item(b.collection, b.tag::int) END,"
    " CASE WHEN b.tag IS NOT NULL"
    " THEN (SELECT c.base_item FROM pgstac.collections c WHERE c.id = b.collection) END)"
)


def rows_sql(
    clauses: Clauses,
    token: _Token | None,
    limit: int,
    fields: str,
    collection_type_of: str | None,
    offset: int = 0,
) -> str:
    """One statement answering the page's rows (one jsonb array of `[collection, id, item]`, in
    order), the base items they name (`[collection, tag, base item]`), the generation they were
    read under, and a collection's type when asked.

    The WHERE is search()'s `concat_ws(' AND ', _where, token_where)`, the ORDER BY its forward or
    reverse order, the LIMIT one more than the page (to know whether a next page exists), after
    `offset` rows of a first page (`_o`, search_params.py); items
    and base items are made as search()'s format_item makes them (`ITEM_SQL`, `BASE_ITEM_SQL`)."""
    where = clauses.where if token is None else f"{clauses.where} AND {token.where}"
    orderby = clauses.reverse_orderby if token is not None and token.prev else clauses.orderby
    collection_type = (
        "NULL"
        if collection_type_of is None
        else "(SELECT content->>'type' FROM pgstac.collections"
        f" WHERE id = {sql_literal(collection_type_of)})"
    )
    item = ITEM_SQL.format(fields=sql_literal(fields))
    # The page is read once (MATERIALIZED) and its rows aggregated in the order it has them.
    return (
        "WITH page AS MATERIALIZED ("
        f" SELECT items.collection, items.id, {item} AS item"
        f" FROM pgstac.items WHERE {where} ORDER BY {orderby} LIMIT {limit + 1}"
        f"{f' OFFSET {int(offset)}' if offset and token is None else ''})"
        " SELECT (SELECT generation FROM csdr.search_generation),"
        f" {collection_type},"
        " (SELECT jsonb_agg(jsonb_build_array(collection, id, item)) FROM page),"
        f" (SELECT jsonb_agg(jsonb_build_array(b.collection, b.tagged, {BASE_ITEM_SQL}))"
        "  FROM (SELECT DISTINCT collection, item->'pgstac:base_item' AS tagged,"
        "  item->>'pgstac:base_item' AS tag FROM page) AS b)"
    )


def with_base_items(rows: list[list[Any]], bases: list[list[Any]]) -> list[list[Any]]:
    """Each row's item with its base item under `pgstac:base_item`, as format_item gives it
    (`bases`: `[collection, tag as JSON, base item]`; a tag is any JSON value, so keyed by its
    JSON text)."""
    base_of = {(collection, orjson.dumps(tag)): base for collection, tag, base in bases}
    for collection, _, item in rows:
        tag = orjson.dumps(item.get("pgstac:base_item"))
        item["pgstac:base_item"] = base_of[collection, tag]
    return rows


def _assembled(
    generation: int,
    where: str,
    order: tuple[str, str | None],
    settings: tuple[str | None, bool],
) -> Clauses:
    """Clauses from their kept pieces: order is (forward, reverse), settings (context, timing)."""
    return Clauses(
        generation=generation,
        where=where,
        orderby=order[0],
        reverse_orderby=order[1],
        context=settings[0],
        timing=settings[1],
    )


class _Kept(OrderedDict[bytes, Any]):
    """A least-recently-used map of at most `size` entries."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def find(self, key: bytes) -> Any:
        """The value kept for `key` (None when none is), now the most recently used."""
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value

    def keep(self, key: bytes, value: Any) -> None:
        """Keep `value` for `key`, forgetting the least recently used past `size`."""
        self[key] = value
        self.move_to_end(key)
        if len(self) > self.size:
            self.popitem(last=False)


class ItemSearch:
    """Pages of item searches (see the module docstring); one per process.

    pgSTAC's pieces are kept apart, each under the key of what it depends on: a search's WHERE
    under the whole search (without token, limit and fields), its ORDER BY under its sortby and
    collections, the context and timing settings under its `conf`. So a search that differs
    from one asked before only by its box or time (a portal's map moved) asks pgSTAC for its
    WHERE alone (~1 ms), not for its ORDER BY again (sort_sqlorderby: 2-5 ms here). All kept
    pieces belong to one generation of the queryables and settings; a statement that reads
    another generation forgets them all."""

    def __init__(self, cache_size: int = CACHE_SIZE) -> None:
        self.generation: int | None = None
        self._wheres = _Kept(cache_size)
        self._orders = _Kept(cache_size)
        self._settings = _Kept(64)

    def _observe(self, generation: int) -> bool:
        """Note the generation a statement read; False (and everything kept forgotten) when it
        is not the one the kept pieces belong to."""
        if generation == self.generation:
            return True
        self._wheres.clear()
        self._orders.clear()
        self._settings.clear()
        self.generation = generation
        return False

    async def _clauses(
        self, conn: Connection, search: dict[str, Any], key: bytes, cacheable: bool
    ) -> Clauses:
        """pgSTAC's clauses for `search` (`key`: its JSON without token, limit and fields),
        from what is kept, the missing pieces asked of pgSTAC in one statement.

        The generation is read by that statement's own snapshot, taken before any of pgSTAC's
        functions runs; those read the queryables and settings with that snapshot or later ones.
        So pieces are never older than the generation they are kept under: a change that commits
        meanwhile makes them newer, and the next page's generation check asks again."""
        order_key = orjson.dumps(
            [search.get("sortby"), search.get("collections")], option=orjson.OPT_SORT_KEYS
        )
        settings_key = orjson.dumps(search.get("conf"), option=orjson.OPT_SORT_KEYS)
        while True:
            where = self._wheres.find(key) if cacheable else None
            order = self._orders.find(order_key)
            settings = self._settings.find(settings_key)
            if where is not None and order is not None and settings is not None:
                assert self.generation is not None
                return _assembled(self.generation, where, order, settings)
            row = await conn.fetchrow(
                PIECES_SQL, key.decode(), where is None, order is None, settings is None
            )
            assert row is not None
            kept_used = where is not None or order is not None or settings is not None
            if not self._observe(row["generation"]) and kept_used:
                continue  # kept pieces were of another generation: ask for all of them
            where = where if where is not None else row["where"]
            order = order if order is not None else (row["orderby"], None)
            settings = settings if settings is not None else (row["context"], bool(row["timing"]))
            if cacheable:
                self._wheres.keep(key, where)
            self._orders.keep(order_key, order)
            self._settings.keep(settings_key, settings)
            return _assembled(row["generation"], where, order, settings)

    async def _reverse_orderby(
        self, conn: Connection, search: dict[str, Any], key: bytes, clauses: Clauses
    ) -> Clauses:
        """`clauses` with search()'s order for a page before a `prev:` token, kept with the
        forward order (asked of pgSTAC only then: sort_sqlorderby costs 2-5 ms here)."""
        reverse = await conn.fetchval(REVERSE_ORDERBY_SQL, key.decode())
        order_key = orjson.dumps(
            [search.get("sortby"), search.get("collections")], option=orjson.OPT_SORT_KEYS
        )
        if self.generation == clauses.generation:
            self._orders.keep(order_key, (clauses.orderby, reverse))
        return replace(clauses, reverse_orderby=reverse)

    async def _token(self, conn: Connection, search: dict[str, Any]) -> _Token | None:
        """search()'s reading of the search's token (None when it has none)."""
        if search.get("token") is None:
            return None
        token = search["token"]
        text = token if isinstance(token, str) else orjson.dumps(token).decode()  # as ->> reads
        row = await conn.fetchrow(
            TOKEN_SQL,
            orjson.dumps(search["sortby"]).decode() if "sortby" in search else None,
            orjson.dumps(search["collections"]).decode() if "collections" in search else None,
            text,
        )
        assert row is not None
        prev, collection, item_id, where = row
        return _Token(prev, collection, item_id, where, text)

    async def search(
        self,
        conn: Connection,
        search: dict[str, Any],
        collection_type_of: str | None = None,
        offset: int = 0,
    ) -> Page:
        """The page `pgstac.search(search)` answers (see the module docstring); with
        `collection_type_of`, also that collection's `type` (read in the same statement); a
        first page starts `offset` items in (a page after a token ignores it)."""
        started = time.perf_counter()
        limit = search_limit(search)
        fields = orjson.dumps(search.get("fields", {})).decode()
        ignored = ("token", "limit", "fields")
        key = orjson.dumps(
            {k: v for k, v in search.items() if k not in ignored}, option=orjson.OPT_SORT_KEYS
        )
        cacheable = "ids" not in search
        # Asked before the token is read, as search() asks (and raises).
        clauses = await self._clauses(conn, search, key, cacheable)
        token = await self._token(conn, search)
        # A first page of a kept search is asked again and again: its statement stays prepared
        # in asyncpg's cache. A page after a token or a single item read is asked once; it is
        # prepared apart, so it does not push the statements that are asked again out of that
        # cache (100 per connection).
        offset = offset if token is None else 0
        reused = cacheable and token is None and not offset
        while True:
            if token is not None and token.prev and clauses.reverse_orderby is None:
                clauses = await self._reverse_orderby(conn, search, key, clauses)
            sql = rows_sql(clauses, token, limit, fields, collection_type_of, offset)
            row = await (conn.fetchrow(sql) if reused else (await conn.prepare(sql)).fetchrow())
            assert row is not None
            generation, collection_type, rows, bases = row
            if generation == clauses.generation:
                break
            # The queryables or settings changed since these clauses were made: make them again.
            self._observe(generation)
            clauses = await self._clauses(conn, search, key, cacheable)
        page = self._page(with_base_items(rows or [], bases or []), token, limit)
        page.collection_type = collection_type
        if clauses.context is not None and clauses.context != "off":
            conf = orjson.dumps(search["conf"]).decode() if "conf" in search else None
            page.number_matched = await conn.fetchval(WHERE_STATS_SQL, clauses.where, conf)
        if clauses.timing:
            page.timing_ms = (time.perf_counter() - started) * 1000
        return page

    @staticmethod
    def _page(rows: list[list[Any]], token: _Token | None, limit: int) -> Page:
        """search()'s page from the rows read (limit + 1 at most): the token's own item dropped,
        the extra row taken as proof of a next (or, going back, a previous) page."""
        if token is not None and token.prev:
            rows.reverse()
        if token is not None and rows:
            if rows[0][0] == token.collection and rows[0][1] == token.id:
                rows.pop(0)
            elif rows[-1][0] == token.collection and rows[-1][1] == token.id:
                rows.pop()
        has_prev = token is not None and not token.prev
        has_next = token is not None and token.prev
        if len(rows) == limit + 1:
            if token is not None and token.prev:
                has_prev = True
                rows.pop(0)
            else:
                has_next = True
                rows.pop()
        next_token = page_token(rows[-1][0], rows[-1][1]) if has_next and rows else None
        prev_token = None
        if token is not None and has_prev and (rows or limit == 0):
            prev_token = (
                page_token(rows[0][0], rows[0][1])
                if rows
                else page_token(token.collection, token.id)
            )
            # search() never hands back the token that produced this page (compared lowered,
            # as get_token_record reads tokens).
            if f"prev:{prev_token}".lower() == token.text.lower():
                prev_token = None
        return Page(features=[r[2] for r in rows], next=next_token, prev=prev_token)
