"""Usage statistics in the seeds' terms, summed from the append-only ledger: `ordered` (scenes
charged, net of refunds: canceled and failed items are not ordered), `released` (scenes made
available, i.e. delivered), `downloaded` (scenes downloaded at least once), grouped by country,
organisation, platform, instrument, collection, class and year, quarter or month (UTC). Totals
are computed by a query of their own over the same rows, so a test can check they are the
sums.
Reports over whole months read the ledger's monthly sums (a trigger keeps them), others the
ledger itself.
An organisation sees its own rows; administrators see every organisation's."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import asyncpg

from csdr_access import charging

# A report's groups over the ledger (`l`: csdr.usage_ledger) and over its monthly sums (`m`:
# csdr.usage_monthly, kept by a trigger), which answer reports over whole months.
LEDGER_GROUPS = {
    "country": "l.country",
    "organisation": "o.name",
    "platform": "l.platform",
    "instrument": "l.instrument",
    "collection": "l.collection",
    "class": "l.class",
    "year": "to_char(l.at AT TIME ZONE 'UTC', 'YYYY')",
    "quarter": "to_char(l.at AT TIME ZONE 'UTC', 'YYYY-\"Q\"Q')",
    "month": "to_char(l.at AT TIME ZONE 'UTC', 'YYYY-MM')",
}
MONTHLY_GROUPS = {
    **LEDGER_GROUPS,
    "platform": "nullif(l.platform, '')",
    "instrument": "nullif(l.instrument, '')",
    "year": "to_char(l.month, 'YYYY')",
    "quarter": "to_char(l.month, 'YYYY-\"Q\"Q')",
    "month": "to_char(l.month, 'YYYY-MM')",
}
GROUPS = tuple(LEDGER_GROUPS)
MEASURES = ("ordered", "released", "downloaded")


def _sums(value: str) -> str:
    return (
        f"coalesce(sum({value}) FILTER (WHERE l.kind IN ('reserved', 'refunded')), 0)::bigint"
        " AS ordered,"
        f" coalesce(sum({value}) FILTER (WHERE l.kind = 'released'), 0)::bigint AS released,"
        f" coalesce(sum({value}) FILTER (WHERE l.kind = 'downloaded'), 0)::bigint AS downloaded"
    )


LEDGER = (
    _sums("l.delta"),
    " FROM csdr.usage_ledger l JOIN csdr.organisations o ON o.id = l.org_id"
    " WHERE l.at >= $1 AND l.at < $2 AND ($3::bigint IS NULL OR l.org_id = $3)",
)
MONTHLY = (
    _sums("l.total"),
    " FROM csdr.usage_monthly l JOIN csdr.organisations o ON o.id = l.org_id"
    " WHERE l.month >= $1::timestamptz::date AND l.month < $2::timestamptz::date"
    " AND ($3::bigint IS NULL OR l.org_id = $3)",
)


def whole_months(start: datetime, end: datetime) -> bool:
    """Whether both ends are the first instant of a month in UTC."""
    return all(
        (t.day, t.hour, t.minute, t.second, t.microsecond) == (1, 0, 0, 0, 0)
        for t in (start.astimezone(UTC), end.astimezone(UTC))
    )


async def usage(
    conn: asyncpg.Connection,
    start: datetime,
    end: datetime,
    group_by: list[str],
    org_id: int | None,
    at: datetime,
    default_quota: int,
) -> dict[str, Any]:
    """Rows per group, their totals, and the quota of each organisation in view for its period
    holding the moment `at`."""
    monthly = whole_months(start, end)
    groups = MONTHLY_GROUPS if monthly else LEDGER_GROUPS
    sums, source = MONTHLY if monthly else LEDGER
    columns = [f'{groups[g]} AS "{g}"' for g in group_by]
    order = ", ".join(str(i + 1) for i in range(len(group_by)))
    sql = f"SELECT {', '.join([*columns, sums])}{source}" + (
        f" GROUP BY {order} ORDER BY {order}" if group_by else ""
    )
    rows = [dict(r) for r in await conn.fetch(sql, start, end, org_id)]
    if not group_by:
        rows = [r for r in rows if any(r[m] for m in MEASURES)]
    # The totals by a query of their own, not by adding the rows up: a test can compare them.
    totals = dict(await conn.fetchrow(f"SELECT {sums}{source}", start, end, org_id) or {})
    orgs = await conn.fetch(
        "SELECT id FROM csdr.organisations o WHERE ($1::bigint IS NULL OR o.id = $1)"
        " AND ($1::bigint IS NOT NULL OR EXISTS (SELECT 1 FROM csdr.quota_usage u"
        "  WHERE u.org_id = o.id AND u.period_start <= $2::date"
        "  AND u.period_start > $2::date - interval '1 year')"
        "  OR EXISTS (SELECT 1 FROM csdr.quota_limits q WHERE q.org_id = o.id)) ORDER BY name",
        org_id,
        at.astimezone(UTC).date(),
    )
    quota_rows = []
    for org in orgs:
        snapshot = await charging.snapshot(conn, org["id"], at, default_quota)
        quota_rows += [q.as_dict() for q in snapshot]
    return {"group_by": group_by, "rows": rows, "totals": totals, "quotas": quota_rows}


async def summary(conn: asyncpg.Connection, year: int | None) -> list[dict[str, Any]]:
    """Per country and year, the measures of every organisation of the country together."""
    rows = await conn.fetch(
        f"SELECT l.country, to_char(l.month, 'YYYY') AS year, {MONTHLY[0]}"
        " FROM csdr.usage_monthly l"
        " WHERE $1::int IS NULL OR l.month >= make_date($1, 1, 1)"
        " AND l.month < make_date($1 + 1, 1, 1) GROUP BY 1, 2 ORDER BY 2, 1",
        year,
    )
    return [dict(r) for r in rows]


def as_csv(report: dict[str, Any]) -> str:
    """The rows of a report as CSV: one column per group, then the measures."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*report["group_by"], *MEASURES])
    for row in report["rows"]:
        writer.writerow([*(row[g] for g in report["group_by"]), *(row[m] for m in MEASURES)])
    return out.getvalue()
