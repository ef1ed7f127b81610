"""The append-only usage ledger (csdr.usage_ledger): +1/-1 per scene and organisation for each
charge of an order (`reserved`), refund (`refunded`), delivery (`released`) and first download
(`downloaded`, through a delivery link or the catalog; a download that took the charge itself has
no order). Statistics are sums of its rows, so every total is the sum of its parts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    import asyncpg


@dataclass(frozen=True)
class Entry:
    """What one ledger row is about."""

    org_id: int
    quota_class: str
    period: date
    collection: str
    item_id: str
    platform: str | None
    instrument: str | None
    order_id: UUID | None


DELTAS = {"reserved": 1, "refunded": -1, "released": 1, "downloaded": 1}


async def record(conn: asyncpg.Connection, at: datetime, kind: str, entries: list[Entry]) -> None:
    """Append one `kind` row per entry (the organisation's country is copied in)."""
    await record_rows(conn, at, [(kind, e) for e in entries])


INSERT_SQL = """
INSERT INTO csdr.usage_ledger (at, org_id, country, class, period_start, collection, item_id,
    platform, instrument, order_id, kind, delta)
SELECT $1, o.id, o.country, r.class, r.period_start, r.collection, r.item_id, r.platform,
    r.instrument, r.order_id, r.kind, r.delta
FROM unnest($2::bigint[], $3::text[], $4::date[], $5::text[], $6::text[], $7::text[], $8::text[],
    $9::uuid[], $10::text[], $11::smallint[])
    WITH ORDINALITY AS r (org_id, class, period_start, collection, item_id, platform, instrument,
    order_id, kind, delta, n)
JOIN csdr.organisations o ON o.id = r.org_id ORDER BY r.n
"""
"""Ledger rows in one statement (the monthly sums' trigger runs once), from insert_args'
parameters $1-$11; a caller may run it as a CTE of a statement of its own."""


def insert_args(at: datetime, rows: list[tuple[str, Entry]]) -> list[Any]:
    """INSERT_SQL's 11 parameters for (kind, entry) rows."""
    return [
        at,
        [e.org_id for _, e in rows],
        [e.quota_class for _, e in rows],
        [e.period for _, e in rows],
        [e.collection for _, e in rows],
        [e.item_id for _, e in rows],
        [e.platform for _, e in rows],
        [e.instrument for _, e in rows],
        [e.order_id for _, e in rows],
        [kind for kind, _ in rows],
        [DELTAS[kind] for kind, _ in rows],
    ]


async def record_rows(
    conn: asyncpg.Connection, at: datetime, rows: list[tuple[str, Entry]]
) -> None:
    """Append one row per (kind, entry), in one statement (the monthly sums' trigger runs once)."""
    if rows:
        await conn.execute(INSERT_SQL, *insert_args(at, rows))
