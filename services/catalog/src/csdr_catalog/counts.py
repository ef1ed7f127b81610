"""`numberMatched` on every page (harvesters such as GEO DAB read their count from it): exact when
the planner expects few matches, the planner's estimate above a threshold (a count over a million
rows costs seconds). pgSTAC's `where_stats` does both and caches the result per WHERE clause; a
client that needs no count says `count=false`, and the answer says when the number is an estimate
(`numberMatchedEstimated`)."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from asyncpg import Connection

STATS_SQL = (
    "SELECT estimated_count, total_count"
    " FROM pgstac.where_stats(pgstac.stac_search_to_where($1::text::jsonb), false, $2::text::jsonb)"
)


@dataclass(frozen=True)
class Matched:
    """How many items a search matches, and whether that number is the planner's estimate."""

    number: int
    estimated: bool


async def number_matched(
    conn: Connection,
    search: dict[str, object],
    exact_below: int,
    stats_ttl_s: int,
    cache: bool = True,
) -> Matched:
    """Count the items `search` matches: exactly below `exact_below` estimated rows; `cache`:
    keep the count in pgSTAC's cache (not on a read-only standby: counted anew each time)."""
    conf = {
        "context": "auto",
        "context_estimated_count": str(exact_below),
        "context_estimated_cost": "0",
        "context_stats_ttl": f"{stats_ttl_s} seconds",
        # The read pool runs pgSTAC read-only (db.py); the counts cache is the write it needs,
        # except on a standby, which takes no writes.
        "readonly": "false" if cache else "true",
    }
    where = {k: v for k, v in search.items() if k not in ("limit", "token", "sortby", "fields")}
    row = await conn.fetchrow(STATS_SQL, orjson.dumps(where).decode(), orjson.dumps(conf).decode())
    if row["total_count"] is not None:
        return Matched(int(row["total_count"]), estimated=False)
    return Matched(int(row["estimated_count"] or 0), estimated=True)
