"""Usage statistics in the seeds' terms, summed from the append-only ledger: `ordered` (scenes
charged, net of refunds: canceled and failed items are not ordered), `released` (scenes made
available, i.e. delivered), `downloaded` (scenes downloaded at least once), grouped by country,
organisation, platform, instrument, collection, class and year, quarter or month (UTC). Totals
are computed by a separate query over the same rows, so a test can check they are the sums.
An organisation sees its own rows; administrators see every organisation's."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from typing import Any

import asyncpg

from csdr_orders import quotas

GROUPS = {
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
MEASURES = ("ordered", "released", "downloaded")
SUMS = (
    "coalesce(sum(l.delta) FILTER (WHERE l.kind IN ('reserved', 'refunded')), 0) AS ordered,"
    " coalesce(sum(l.delta) FILTER (WHERE l.kind = 'released'), 0) AS released,"
    " coalesce(sum(l.delta) FILTER (WHERE l.kind = 'downloaded'), 0) AS downloaded"
)
WHERE = " WHERE l.at >= $1 AND l.at < $2 AND ($3::bigint IS NULL OR l.org_id = $3)"
FROM = " FROM csdr.usage_ledger l JOIN csdr.organisations o ON o.id = l.org_id"


async def usage(
    conn: asyncpg.Connection,
    start: datetime,
    end: datetime,
    group_by: list[str],
    org_id: int | None,
    period: date,
    default_quota: int,
) -> dict[str, Any]:
    """Rows per group, their totals, and the quota of each organisation in view for `period`."""
    columns = [f'{GROUPS[g]} AS "{g}"' for g in group_by]
    order = ", ".join(str(i + 1) for i in range(len(group_by)))
    sql = f"SELECT {', '.join([*columns, SUMS])}{FROM}{WHERE}" + (
        f" GROUP BY {order} ORDER BY {order}" if group_by else ""
    )
    rows = [dict(r) for r in await conn.fetch(sql, start, end, org_id)]
    if not group_by:
        rows = [r for r in rows if any(r[m] for m in MEASURES)]
    totals = dict(await conn.fetchrow(f"SELECT {SUMS}{FROM}{WHERE}", start, end, org_id) or {})
    orgs = await conn.fetch(
        "SELECT id FROM csdr.organisations o WHERE ($1::bigint IS NULL OR o.id = $1)"
        " AND ($1::bigint IS NOT NULL OR EXISTS (SELECT 1 FROM csdr.quota_usage u"
        "  WHERE u.org_id = o.id AND u.period_start = $2)"
        "  OR EXISTS (SELECT 1 FROM csdr.quota_limits q WHERE q.org_id = o.id)) ORDER BY name",
        org_id,
        period,
    )
    quota_rows = []
    for org in orgs:
        quota_rows += [
            q.as_dict() for q in await quotas.snapshot(conn, org["id"], period, default_quota)
        ]
    return {"group_by": group_by, "rows": rows, "totals": totals, "quotas": quota_rows}


def as_csv(report: dict[str, Any]) -> str:
    """The rows of a report as CSV: one column per group, then the measures."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*report["group_by"], *MEASURES])
    for row in report["rows"]:
        writer.writerow([*(row[g] for g in report["group_by"]), *(row[m] for m in MEASURES)])
    return out.getvalue()
