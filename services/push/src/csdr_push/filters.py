"""A subscription's CQL2 filter: checked by the `cql2` package, compiled to SQL by pgSTAC.

The compiled WHERE clause is what the database evaluates on each new item
(csdr.matching_subscriptions), so a filter means what it means in a STAC API search on this node.
"""

from typing import Any

import asyncpg
import cql2

from csdr_push.errors import InvalidFilter
from csdr_service import cql2_bounds


def to_cql2_json(value: dict[str, Any] | str) -> dict[str, Any]:
    """CQL2 JSON for a filter given as CQL2 JSON or CQL2 text; InvalidFilter when it is neither
    or beyond the node's CQL2 limits."""
    try:
        if isinstance(value, str):
            cql2_bounds.check_text(value)
        else:
            cql2_bounds.check_json(value)
    except cql2_bounds.FilterTooComplex as exc:
        raise InvalidFilter(str(exc)) from None
    try:
        expr = cql2.Expr(value)
        expr.validate()
    except Exception as exc:  # cql2 raises a plain Exception for unparsable text or JSON
        raise InvalidFilter(f"filter is not valid CQL2: {_first_line(exc)}") from None
    return dict(expr.to_json())


async def compile_where(conn: asyncpg.Connection, filter_json: dict[str, Any]) -> str:
    """pgSTAC's SQL for the filter, planned once against pgstac.items to catch type errors."""
    search = {"filter": filter_json, "filter-lang": "cql2-json"}
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL search_path TO pgstac, public")
            where = await conn.fetchval("SELECT pgstac.stac_search_to_where($1::jsonb)", search)
            await conn.execute(f"EXPLAIN SELECT 1 FROM pgstac.items WHERE {where}")
    except asyncpg.PostgresError as exc:
        raise InvalidFilter(f"filter cannot be evaluated: {_first_line(exc)}") from None
    return str(where)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
