"""Usage statistics in the seeds' terms: `ordered` (scenes charged, net of refunds: canceled and
failed items are not ordered), `released` (scenes made available, i.e. delivered), `downloaded`
(scenes downloaded at least once), summed from the append-only ledger, and `source` (scenes in
the catalogue over an organisation's area that it may see, counted from pgSTAC's items), grouped
by country, organisation, platform, instrument, collection, class and year, quarter or month
(UTC). Totals are counted by aggregates of their own over the same rows (never by adding up
the report's rows), so a test can check they are the sums.
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
# csdr.usage_monthly, kept by a trigger), which answer reports over whole months. Time groups are
# the period's first day (UTC), shown as TIME_FORMATS says once the rows are summed (to_char
# costs microseconds a row, over every ledger row or scene).
LEDGER_GROUPS = {
    "country": "l.country",
    "organisation": "o.name",
    "platform": "l.platform",
    "instrument": "l.instrument",
    "collection": "l.collection",
    "class": "l.class",
    "year": "date_trunc('year', l.at AT TIME ZONE 'UTC')::date",
    "quarter": "date_trunc('quarter', l.at AT TIME ZONE 'UTC')::date",
    "month": "date_trunc('month', l.at AT TIME ZONE 'UTC')::date",
}
MONTHLY_GROUPS = {
    **LEDGER_GROUPS,
    "platform": "nullif(l.platform, '')",
    "instrument": "nullif(l.instrument, '')",
    "year": "date_trunc('year', l.month::timestamp)::date",
    "quarter": "date_trunc('quarter', l.month::timestamp)::date",
    "month": "l.month",
}
# The groups of `source` over the (unit, scene) pairs `p` (SOURCE_PAIRS); time is the scene's
# own (its item datetime), its class the collection's quota class.
SOURCE_GROUPS = {
    "country": "p.country",
    "organisation": "p.organisation",
    "platform": "p.platform",
    "instrument": "p.instrument",
    "collection": "p.collection",
    "class": "coalesce(qc.class, 'all')",
    "year": "date_trunc('year', p.datetime AT TIME ZONE 'UTC')::date",
    "quarter": "date_trunc('quarter', p.datetime AT TIME ZONE 'UTC')::date",
    "month": "date_trunc('month', p.datetime AT TIME ZONE 'UTC')::date",
}
TIME_FORMATS = {"year": "YYYY", "quarter": 'YYYY-"Q"Q', "month": "YYYY-MM"}
GROUPS = tuple(LEDGER_GROUPS)
MEASURES = ("source", "ordered", "released", "downloaded")
LEDGER_MEASURES = MEASURES[1:]

# `source`: for each organisation in view ($3: one, or NULL: all), the catalogue's scenes with a
# datetime in [$1, $2) whose footprint intersects its area (its own, else its country's) in the
# collections it may see (csdr.visible_collections as a registered caller, or as administrator
# while it holds an admin key, as csdr.owner_may_see judges). The unit a scene is counted for is
# the organisation ($4 true) or its country ($4 false: a scene over Thailand counts once for
# Thailand however many Thai organisations may see it); each (unit, scene) pair is counted once,
# so every grouping's rows add up to the pairs' count, the total. Each distinct area is searched
# once (`hits`), in its pieces of at most 64 vertices (csdr.area_parts, migration 0047: tighter
# index boxes and cheap exact tests against pgSTAC's GiST-indexed footprints), then handed to
# its units.
SOURCE_PAIRS = """
WITH visible AS (
    SELECT o.id, coalesce(array_agg(v.collection) FILTER (WHERE v.collection IS NOT NULL),
                          '{}') AS visible
    FROM csdr.organisations o
    CROSS JOIN LATERAL (SELECT EXISTS (
        SELECT 1 FROM csdr.api_keys k
        WHERE k.org_id = o.id AND 'admin' = ANY (k.scopes) AND k.revoked_at IS NULL
          AND (k.expires_at IS NULL OR k.expires_at > now())) AS admin) k
    LEFT JOIN LATERAL csdr.visible_collections(k.admin, true, o.id) AS v (collection) ON true
    WHERE $3::bigint IS NULL OR o.id = $3
    GROUP BY o.id
), orgs AS MATERIALIZED (
    SELECT o.id, o.name, o.country,
           CASE WHEN a.org_id IS NULL THEN 'country:' || o.country ELSE 'org:' || o.id END AS area,
           coalesce(a.geom, c.geom) AS geom, v.visible
    FROM csdr.organisations o
    JOIN visible v ON v.id = o.id
    LEFT JOIN csdr.organisation_areas a ON a.org_id = o.id
    LEFT JOIN csdr.country_areas c ON c.country = o.country
    WHERE coalesce(a.geom, c.geom) IS NOT NULL
), units AS MATERIALIZED (
    SELECT g.*, count(*) OVER (PARTITION BY g.unit) AS areas FROM (
        SELECT CASE WHEN $4::boolean THEN o.id::text ELSE o.country END AS unit, o.country,
               CASE WHEN $4::boolean THEN o.name END AS organisation, o.area,
               array_agg(DISTINCT v.collection) AS visible
        FROM orgs o, unnest(o.visible) AS v (collection)
        GROUP BY 1, 2, 3, 4) g
), parts AS (
    SELECT p.area, p.geom FROM csdr.area_parts p WHERE p.area IN (SELECT area FROM orgs)
), hits AS MATERIALIZED (
    SELECT DISTINCT ON (p.area COLLATE "C", i.collection COLLATE "C", i.id COLLATE "C")
           p.area, i.collection, i.id, i.datetime,
           i.content #>> '{properties,platform}' AS platform,
           i.content #>> '{properties,instruments,0}' AS instrument
    FROM parts p JOIN pgstac.items i ON ST_Intersects(i.geometry, p.geom)
    WHERE i.datetime >= $1 AND i.datetime < $2
), shared AS MATERIALIZED (
    SELECT DISTINCT u.unit, u.country, u.organisation, h.collection, h.id, h.datetime,
           h.platform, h.instrument
    FROM units u JOIN hits h ON h.area = u.area AND h.collection = ANY (u.visible)
    WHERE u.areas > 1
)
"""
# The pairs' count: a unit with one area (the common case) takes its area's hits in the
# collections it may see; one with several (a country whose organisations have areas of their
# own) counts the distinct scenes of `shared`.
SOURCE_TOTAL = """
SELECT coalesce((
    SELECT sum(h.n) FROM units u
    JOIN (SELECT area, collection, count(*) AS n FROM hits GROUP BY 1, 2) h
      ON h.area = u.area AND h.collection = ANY (u.visible)
    WHERE u.areas = 1), 0)::bigint + (SELECT count(*) FROM shared)
"""
QUOTA_CLASS = " LEFT JOIN csdr.quota_classes qc ON qc.collection = p.collection"
UNIT_GROUPS = ("country", "organisation")


def source_counts(group_by: list[str]) -> str:
    """The CTE `counted`: per unit and the report's scene groups (`k_<group>`), the number of
    pairs `n`. Hits are grouped per area before they meet the units, so a report over many
    organisations multiplies a few hundred groups, not every scene."""
    keys = [g for g in group_by if g not in UNIT_GROUPS]
    exprs = "".join(f', {SOURCE_GROUPS[g]} AS "k_{g}"' for g in keys)
    by = "".join(f', "k_{g}"' for g in keys)
    return (
        f", counted AS (SELECT u.unit, u.country, u.organisation{by}, hg.n FROM units u"
        f" JOIN (SELECT p.area, p.collection{exprs}, count(*) AS n FROM hits p{QUOTA_CLASS}"
        f"  GROUP BY p.area, p.collection{by}) hg"
        "  ON hg.area = u.area AND hg.collection = ANY (u.visible) WHERE u.areas = 1"
        f" UNION ALL SELECT p.unit, p.country, p.organisation{exprs}, 1 FROM shared p{QUOTA_CLASS})"
    )


def _sums(value: str) -> str:
    """The ledger's measures summed over `value` (a row's delta or a monthly total)."""
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
    sums, ledger = MONTHLY if monthly else LEDGER
    # `source` is counted per organisation when the report is (or is one organisation's), else
    # per country.
    per_org = org_id is not None or "organisation" in group_by
    args = (start, end, org_id, per_org)
    async with conn.transaction():
        # JIT compilation would take longer than these queries run (seconds under load). A
        # generic plan of a prepared statement (asyncpg's, from its sixth run on) cannot see
        # the range: the totals' read of the monthly sums took 26 ms instead of 4.
        await conn.execute("SET LOCAL jit = off; SET LOCAL plan_cache_mode = force_custom_plan")
        rows, totals = await _rows_and_totals(conn, group_by, groups, sums, ledger, args)
    orgs = await conn.fetch(
        "SELECT id, quota_period_from FROM csdr.organisations o"
        " WHERE ($1::bigint IS NULL OR o.id = $1)"
        " AND ($1::bigint IS NOT NULL OR EXISTS (SELECT 1 FROM csdr.quota_usage u"
        "  WHERE u.org_id = o.id AND u.period_start <= $2::date"
        "  AND u.period_start > $2::date - interval '1 year')"
        "  OR EXISTS (SELECT 1 FROM csdr.quota_limits q WHERE q.org_id = o.id)) ORDER BY name",
        org_id,
        at.astimezone(UTC).date(),
    )
    anchors = {org["id"]: org["quota_period_from"] for org in orgs}
    quotas = await charging.snapshots(conn, anchors, at, default_quota)
    quota_rows = [q.as_dict() for q in quotas]
    return {"group_by": group_by, "rows": rows, "totals": totals, "quotas": quota_rows}


async def _rows_and_totals(
    conn: asyncpg.Connection,
    group_by: list[str],
    groups: dict[str, str],
    sums: str,
    ledger: str,
    args: tuple[Any, ...],
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The report's rows (the ledger's groups and source's, merged) and its totals."""
    if group_by:
        order = ", ".join(str(i + 1) for i in range(len(group_by)))
        names = ", ".join(
            f'to_char(r."{g}"::timestamp, \'{TIME_FORMATS[g]}\') AS "{g}"'
            if g in TIME_FORMATS
            else f'r."{g}"'
            for g in group_by
        )
        from_ledger = ", ".join(f'{groups[g]} AS "{g}"' for g in group_by)
        from_counted = ", ".join(
            f'c.{g} AS "{g}"' if g in UNIT_GROUPS else f'c."k_{g}" AS "{g}"' for g in group_by
        )
        ledger_rows = f"SELECT {from_ledger}, 0::bigint AS source, {sums}{ledger} GROUP BY {order}"
        source_rows = (
            f"SELECT {from_counted}, sum(c.n)::bigint AS source, "
            + ", ".join(f"0::bigint AS {m}" for m in LEDGER_MEASURES)
            + f" FROM counted c GROUP BY {order}"
        )
        # Both kinds of rows merged per group. The source total is counted in the same statement
        # (the areas are searched once) but by its own path, not by adding up the rows.
        sql = (
            f"{SOURCE_PAIRS}{source_counts(group_by)}, total AS ({SOURCE_TOTAL})"
            f" SELECT {names}, sum(source)::bigint AS source, "
            + ", ".join(f"sum({m})::bigint AS {m}" for m in LEDGER_MEASURES)
            + ", (SELECT * FROM total) AS source_total"
            f" FROM ({ledger_rows} UNION ALL {source_rows}) r GROUP BY {order} ORDER BY {order}"
        )
        rows = [dict(r) for r in await conn.fetch(sql, *args)]
        source = rows[0]["source_total"] if rows else None
        for row in rows:
            del row["source_total"]
    else:
        rows = [await _totals(conn, sums, ledger, args)]
        source = rows[0]["source"]
        rows = [r for r in rows if any(r[m] for m in MEASURES)]
    # The totals by a query of their own, not by adding the rows up: a test can compare them.
    totals = await _totals(conn, sums, ledger, args, source)
    return rows, totals


async def _totals(
    conn: asyncpg.Connection,
    sums: str,
    ledger: str,
    args: tuple[Any, ...],
    source: int | None = None,
) -> dict[str, int]:
    """Every measure over the whole report: `source` as the count of (unit, scene) pairs
    (unless counted already)."""
    if source is None:
        source = await conn.fetchval(f"{SOURCE_PAIRS}{SOURCE_TOTAL}", *args)
    row = await conn.fetchrow(f"SELECT {sums}{ledger}", *args[:3])
    return {"source": int(source), **dict(row or {})}


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
