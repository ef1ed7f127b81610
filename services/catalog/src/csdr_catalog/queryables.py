"""Which item properties this node knows: pgSTAC's `queryables` table plus the core fields. Sorting
on anything else is an error (pgSTAC would sort on NULLs and answer 200)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager

from asyncpg import Connection
from stac_fastapi.types.errors import InvalidQueryParameter

# Opens a read connection; called only when the properties are read again, so a search whose
# properties are fresh takes no connection from the pool for them.
Connect = Callable[[], AbstractAsyncContextManager[Connection]]

# Fields every item has, sortable without a queryable (pgSTAC's item columns and core properties).
CORE_FIELDS = frozenset(
    {"id", "collection", "datetime", "start_datetime", "end_datetime", "created", "updated"}
)


class KnownProperties:
    """The queryable property names, re-read from the database at most every `ttl_s` seconds."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._types: dict[str, str | None] = {}
        self._read_at = float("-inf")

    async def types(
        self, connect: Connect, max_age_s: float | None = None
    ) -> dict[str, str | None]:
        """Each known property's JSON Schema type (None when its definition names none), read at
        most `max_age_s` ago."""
        if time.monotonic() - self._read_at > (self.ttl_s if max_age_s is None else max_age_s):
            async with connect() as conn:
                rows = await conn.fetch(
                    "SELECT DISTINCT ON (name) name, definition->>'type' AS type"
                    " FROM pgstac.queryables ORDER BY name, collection_ids NULLS FIRST"
                )
            self._types = dict.fromkeys(CORE_FIELDS) | {r["name"]: r["type"] for r in rows}
            self._read_at = time.monotonic()
        return self._types

    async def check_sort_fields(self, connect: Connect, fields: Iterable[str]) -> None:
        """400 naming the first sort field that is not a known property."""
        wanted = list(fields)
        if not wanted:
            return
        known = await self.types(connect)
        for field in wanted:
            name = field.removeprefix("properties.")
            if name not in known:
                # A queryable registered since the last read is not an error: re-read once.
                known = await self.types(connect, max_age_s=1.0)
            if name not in known:
                raise InvalidQueryParameter(
                    f"sortby: unknown field '{field}'; sortable: {', '.join(sorted(known))}"
                )
