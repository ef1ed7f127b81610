"""Quotas: scenes per organisation, class and period. A collection belongs to a class
(csdr.quota_classes, default `all`); a limit is set per organisation and class (`csdr-admin quota
set`, else the service's default). The counter row of (organisation, class, period) is locked
while an order is judged, so racing orders are judged one after the other."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg

from csdr_orders.periods import iso, period_name, resets_at

DEFAULT_CLASS = "all"


@dataclass(frozen=True)
class Quota:
    """One class's numbers for an organisation in a period."""

    org_id: int
    organisation: str
    quota_class: str
    period: date
    limit: int
    used: int
    reserved: int

    @property
    def remaining(self) -> int:
        """Scenes the organisation may still order."""
        return max(0, self.limit - self.used - self.reserved)

    def as_dict(self) -> dict[str, Any]:
        """The numbers as every answer shows them."""
        return {
            "organisation": self.organisation,
            "class": self.quota_class,
            "period": period_name(self.period),
            "limit": self.limit,
            "used": self.used,
            "reserved": self.reserved,
            "remaining": self.remaining,
            "resets_at": iso(resets_at(self.period)),
        }


async def classes_of(conn: asyncpg.Connection, collections: set[str]) -> dict[str, str]:
    """The quota class of each collection."""
    rows = await conn.fetch(
        "SELECT collection, class FROM csdr.quota_classes WHERE collection = ANY($1::text[])",
        sorted(collections),
    )
    found = {r["collection"]: r["class"] for r in rows}
    return {c: found.get(c, DEFAULT_CLASS) for c in collections}


async def lock(
    conn: asyncpg.Connection, org_id: int, quota_class: str, period: date, default: int
) -> tuple[int, int, int]:
    """Lock the counter of (organisation, class, period) for this transaction (creating it);
    (used, reserved, limit)."""
    row = await conn.fetchrow(
        "INSERT INTO csdr.quota_usage AS u (org_id, class, period_start) VALUES ($1, $2, $3)"
        " ON CONFLICT (org_id, class, period_start) DO UPDATE SET committed = u.committed"
        " RETURNING u.committed, u.reserved, coalesce((SELECT l.scenes FROM csdr.quota_limits l"
        "  WHERE l.org_id = $1 AND l.class = $2), $4) AS scenes",
        org_id,
        quota_class,
        period,
        default,
    )
    assert row is not None
    return int(row["committed"]), int(row["reserved"]), int(row["scenes"])


async def change(
    conn: asyncpg.Connection,
    org_id: int,
    quota_class: str,
    period: date,
    reserved: int = 0,
    committed: int = 0,
) -> None:
    """Add to the counters (a reservation, its commit, its refund)."""
    await conn.execute(
        "UPDATE csdr.quota_usage SET reserved = reserved + $4, committed = committed + $5"
        " WHERE org_id = $1 AND class = $2 AND period_start = $3",
        org_id,
        quota_class,
        period,
        reserved,
        committed,
    )


async def snapshot(
    conn: asyncpg.Connection, org_id: int, period: date, default: int
) -> list[Quota]:
    """Every class the organisation has a limit or usage in (at least `all`), for a period."""
    rows = await conn.fetch(
        "WITH classes AS ("
        "  SELECT class FROM csdr.quota_limits WHERE org_id = $1"
        "  UNION SELECT class FROM csdr.quota_usage WHERE org_id = $1 AND period_start = $2"
        "  UNION SELECT $3::text)"
        " SELECT c.class, o.name, l.scenes, coalesce(u.committed, 0) AS committed,"
        "  coalesce(u.reserved, 0) AS reserved"
        " FROM classes c CROSS JOIN csdr.organisations o"
        " LEFT JOIN csdr.quota_limits l ON l.org_id = o.id AND l.class = c.class"
        " LEFT JOIN csdr.quota_usage u"
        "  ON u.org_id = o.id AND u.class = c.class AND u.period_start = $2"
        " WHERE o.id = $1 ORDER BY c.class",
        org_id,
        period,
        DEFAULT_CLASS,
    )
    return [
        Quota(
            org_id,
            r["name"],
            r["class"],
            period,
            default if r["scenes"] is None else int(r["scenes"]),
            int(r["committed"]),
            int(r["reserved"]),
        )
        for r in rows
    ]
