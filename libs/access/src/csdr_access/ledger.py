"""The append-only usage ledger (csdr.usage_ledger): +1/-1 per scene and organisation for each
charge of an order (`reserved`), refund (`refunded`), delivery (`released`) and first download
(`downloaded`, through a delivery link or the catalog; a download that took the charge itself has
no order). Statistics are sums of its rows, so every total is the sum of its parts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING
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
    if not entries:
        return
    await conn.executemany(
        "INSERT INTO csdr.usage_ledger (at, org_id, country, class, period_start, collection,"
        " item_id, platform, instrument, order_id, kind, delta)"
        " SELECT $1, o.id, o.country, $3, $4, $5, $6, $7, $8, $9, $10, $11"
        " FROM csdr.organisations o WHERE o.id = $2",
        [
            (
                at,
                e.org_id,
                e.quota_class,
                e.period,
                e.collection,
                e.item_id,
                e.platform,
                e.instrument,
                e.order_id,
                kind,
                DELTAS[kind],
            )
            for e in entries
        ],
    )
