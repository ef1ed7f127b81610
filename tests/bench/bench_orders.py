"""Orders under load: 1,000 orders from 50 organisations racing for their quotas against one
orders process (16 clients at once), and /stats/usage over a year of ledger rows and a catalogue
of archived scenes over Asia (`source`: CSDR_BENCH_SOURCE_SCENES, default 50,000).

Checks: no organisation's reserved + committed exceeds its limit, and exactly the limit was
taken (every organisation asks for more than it has). Prints p50/p95 of acceptance (201) and
refusal (403) next to GET /quota on the same process (the named baseline: a read of the same
counters without the lock), and /stats/usage p50 (whole months: the monthly sums; other
ranges: the ledger) next to the baseline, the same report grouped from the ledger in SQL, and
the `source` query alone (the catalogue's scenes over each organisation's area).
Goals (issue 16): p95 acceptance <= 100 ms, stats p50 <= 200 ms over 1M rows; printed, not
asserted."""

from __future__ import annotations

import asyncio
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import numpy as np
import psycopg
import pytest
from psycopg.types.json import Jsonb

from conftest import free_port
from csdr_access.admin import add_org, issue_key
from csdr_orders.stats import SOURCE_PAIRS, SOURCE_TOTAL
from tests.e2e.processes import service

ORGS = 50
ORDERS = 1000
LIMIT = 15  # each organisation asks for 20 scenes: 5 refused each
CLIENTS = 16
SCENES = 1000
LEDGER_ROWS = 1_000_000
ARCHIVE_SCENES = int(os.environ.get("CSDR_BENCH_SOURCE_SCENES", "50000"))
MEASURES = ("source", "ordered", "released", "downloaded")
COLLECTION = {
    "type": "Collection",
    "stac_version": "1.1.0",
    "id": "gf1",
    "description": "bench scenes",
    "license": "other",
    "links": [],
    "extent": {
        "spatial": {"bbox": [[-180, -90, 180, 90]]},
        "temporal": {"interval": [[None, None]]},
    },
}


def scene(n: int) -> dict:
    lon, lat = 60 + (n % 100) * 0.5, 10 + (n // 100) * 0.5
    ring = [[lon, lat], [lon + 0.4, lat], [lon + 0.4, lat + 0.4], [lon, lat + 0.4], [lon, lat]]
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": f"S{n:05d}",
        "collection": "gf1",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": [lon, lat, lon + 0.4, lat + 0.4],
        "properties": {
            "datetime": "2026-03-01T03:00:00Z",
            "platform": "gf-1",
            "instruments": ["wfv"],
            "order:status": "succeeded",
        },
        "links": [],
        "assets": {"data": {"href": f"/data/S{n:05d}.tif", "roles": ["data"]}},
    }


def ms(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q)) * 1000 if samples else float("nan")


@pytest.fixture
def node(pg_env: dict[str, str], tmp_path: Path):
    keys = []
    with psycopg.connect(autocommit=True) as conn:
        conn.execute("SET search_path TO pgstac, public")
        conn.execute("SELECT create_collection(%s)", (Jsonb(COLLECTION),))
        conn.execute("SELECT create_items(%s)", (Jsonb([scene(n) for n in range(SCENES)]),))
        for n in range(ORGS):
            name = f"org{n:02d}"
            add_org(conn, name, "TH" if n % 2 else "BD", "partner", "bench")
            keys.append(issue_key(conn, name, ["read"], "bench")[0])
            conn.execute(
                "INSERT INTO csdr.quota_limits (org_id, class, scenes)"
                " SELECT id, 'all', %s FROM csdr.organisations WHERE name = %s",
                (LIMIT, name),
            )
        add_org(conn, "solo", "KE", "partner", "bench")
        keys.append(issue_key(conn, "solo", ["read"], "bench")[0])
    env = {**pg_env, "CSDR_ORDERS_RATE_LIMIT_PER_S": "100000", "CSDR_ORDERS_WORKER": "false"}
    with service("csdr_orders.app:create_app", free_port(), env, tmp_path) as url:
        yield url, keys


def test_racing_orders_and_usage_statistics(node, pg_env):
    url, keys = node
    solo, keys = keys[-1], keys[:-1]
    alone = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for n in range(100):  # one client, one order at a time: the unloaded latency
            start = time.perf_counter()
            r = client.post(
                "/orders",
                json={"items": [{"collection": "gf1", "id": f"S{n:05d}"}]},
                headers={"X-API-Key": solo},
            )
            alone.append(time.perf_counter() - start)
            assert r.status_code == 201
    rng = random.Random(16)
    jobs = []
    for key in keys:
        wanted = rng.sample(range(SCENES), ORDERS // ORGS)
        jobs += [(key, f"S{s:05d}") for s in wanted]
    rng.shuffle(jobs)
    timings: dict[int, list[float]] = {}
    clients = [httpx.Client(base_url=url, timeout=60) for _ in range(CLIENTS)]

    def place(i: int) -> None:
        key, item = jobs[i]
        start = time.perf_counter()
        r = clients[i % CLIENTS].post(
            "/orders",
            json={"items": [{"collection": "gf1", "id": item}]},
            headers={"X-API-Key": key},
        )
        timings.setdefault(r.status_code, []).append(time.perf_counter() - start)

    def read_quota(i: int) -> None:
        start = time.perf_counter()
        r = clients[i % CLIENTS].get("/quota", headers={"X-API-Key": keys[i % ORGS]})
        assert r.status_code == 200
        timings.setdefault(0, []).append(time.perf_counter() - start)

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(place, range(len(jobs))))
    wall = time.perf_counter() - started
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(read_quota, range(ORDERS)))
    assert set(timings) == {0, 201, 403}, {k: len(v) for k, v in timings.items()}

    with psycopg.connect(autocommit=True) as conn:
        worst = conn.execute(
            "SELECT max(committed + reserved), min(committed + reserved), count(*)"
            " FROM csdr.quota_usage u JOIN csdr.organisations o ON o.id = u.org_id"
            " WHERE o.name <> 'solo'"
        ).fetchone()
        charged = conn.execute("SELECT count(*) FROM csdr.entitlements").fetchone()
    assert worst == (LIMIT, LIMIT, ORGS)  # no overrun, and every slot was used
    assert charged == (LIMIT * ORGS + 100,) and len(timings[201]) == LIMIT * ORGS
    print(
        f"\none client, 100 orders one at a time: 201 p50 {ms(alone, 50):.1f} ms"
        f" p95 {ms(alone, 95):.1f} ms"
        f"\n{ORDERS} orders from {ORGS} organisations, {CLIENTS} at once, in {wall:.1f} s"
        f" ({ORDERS / wall:.0f}/s); accepted {len(timings[201])}, refused {len(timings[403])}"
        f"\n  201 p50 {ms(timings[201], 50):.1f} ms p95 {ms(timings[201], 95):.1f} ms"
        f" | 403 p50 {ms(timings[403], 50):.1f} ms p95 {ms(timings[403], 95):.1f} ms"
        f" | GET /quota p50 {ms(timings[0], 50):.1f} ms p95 {ms(timings[0], 95):.1f} ms"
        f"\n  acceptance p95 / quota read p95 = {ms(timings[201], 95) / ms(timings[0], 95):.2f}"
    )

    started = time.perf_counter()
    with psycopg.connect(autocommit=True) as conn:
        conn.execute(
            "INSERT INTO csdr.usage_ledger (at, org_id, country, class, period_start, collection,"
            " item_id, platform, instrument, kind, delta)"
            " SELECT timestamptz '2026-01-01' + (g * 31.5) * interval '1 second', o.id,"
            "  o.country, 'all', date '2026-01-01', 'gf' || (1 + (g / 7) %% 3),"
            "  'S' || lpad((g %% 1000)::text, 5, '0'),"
            "  'gf-' || (1 + (g / 7) %% 3), (ARRAY['wfv', 'pms'])[1 + (g / 11) %% 2],"
            "  (ARRAY['reserved', 'released', 'downloaded', 'refunded'])[1 + g %% 4],"
            "  CASE WHEN g %% 4 = 3 THEN -1 ELSE 1 END"
            " FROM generate_series(1, %s) g"
            " JOIN csdr.organisations o ON o.name = 'org' || lpad((g %% 50)::text, 2, '0')",
            (LEDGER_ROWS,),
        )
        conn.execute("ANALYZE csdr.usage_ledger")
        rows = conn.execute("SELECT count(*) FROM csdr.usage_ledger").fetchone()[0]
    generated = time.perf_counter() - started
    started = time.perf_counter()
    add_archive(ARCHIVE_SCENES)
    archived = time.perf_counter() - started
    admin_key = _admin_key()
    params = {
        "from": "2026-01-01",
        "to": "2027-01-01",
        "group_by": "country,platform,instrument,month",
    }
    api, unaligned, per_org, sql = [], [], [], []
    odd = {**params, "to": "2026-12-31T23:00:00Z"}  # not whole months: read from the ledger
    orgs = {**params, "group_by": "organisation,month"}  # source counted per organisation
    with httpx.Client(base_url=url, timeout=60) as client:
        for n in range(15):
            for sample, query in ((api, params), (unaligned, odd), (per_org, orgs)):
                if sample is not api and n >= 5:
                    continue
                start = time.perf_counter()
                r = client.get("/stats/usage", params=query, headers={"X-API-Key": admin_key})
                sample.append(time.perf_counter() - start)
                assert r.status_code == 200
                report = r.json()
                for m in MEASURES:
                    assert sum(row[m] for row in report["rows"]) == report["totals"][m]
                if sample is api:
                    grouped = len(report["rows"])
    with psycopg.connect(autocommit=True) as conn:
        for _ in range(5):
            start = time.perf_counter()
            conn.execute(
                "SELECT l.country, l.platform, l.instrument,"
                " to_char(l.at AT TIME ZONE 'UTC', 'YYYY-MM'), sum(l.delta)"
                " FILTER (WHERE kind IN ('reserved', 'refunded')), sum(l.delta) FILTER"
                " (WHERE kind = 'released'), sum(l.delta) FILTER (WHERE kind = 'downloaded')"
                " FROM csdr.usage_ledger l WHERE l.at >= '2026-01-01' AND l.at < '2027-01-01'"
                " GROUP BY 1, 2, 3, 4"
            ).fetchall()
            sql.append(time.perf_counter() - start)
    source, pairs = asyncio.run(time_source())
    print(
        f"/stats/usage over {rows:,} ledger rows (generated in {generated:.1f} s) and"
        f" {SCENES + ARCHIVE_SCENES:,} scenes (archive added in {archived:.1f} s),"
        f" {grouped} groups (country, platform, instrument, month):"
        f"\n  whole months (monthly sums) p50 {ms(api, 50):.0f} ms"
        f" | other ranges (the ledger) p50 {ms(unaligned, 50):.0f} ms"
        f" | organisation, month p50 {ms(per_org, 50):.0f} ms"
        f"\n  baseline, the ledger grouped in SQL alone p50 {ms(sql, 50):.0f} ms;"
        f" ratio whole months / baseline {ms(api, 50) / ms(sql, 50):.2f}"
        f"\n  source alone ({pairs:,} country-scene pairs, counted once) p50"
        f" {ms(source, 50):.0f} ms; load average {os.getloadavg()[0]:.1f}"
    )


# Archived scenes (metadata only) of 0.6 degrees somewhere over Asia, some moment of 2026, made
# in SQL (setseed: the same every run) and filed through pgSTAC's staging table.
ARCHIVE_SQL = """
INSERT INTO pgstac.items_staging (content)
SELECT jsonb_build_object(
    'type', 'Feature', 'stac_version', '1.1.0', 'id', 'A' || lpad(g::text, 7, '0'),
    'collection', 'archive', 'links', '[]'::jsonb, 'assets', '{}'::jsonb,
    'geometry', jsonb_build_object('type', 'Polygon', 'coordinates', jsonb_build_array(
        jsonb_build_array(jsonb_build_array(x, y), jsonb_build_array(x + 0.6, y),
            jsonb_build_array(x + 0.6, y + 0.6), jsonb_build_array(x, y + 0.6),
            jsonb_build_array(x, y)))),
    'bbox', jsonb_build_array(x, y, x + 0.6, y + 0.6),
    'properties', jsonb_build_object(
        'datetime', to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'platform', 'gf-' || (1 + g %% 3),
        'instruments', jsonb_build_array((ARRAY['wfv', 'pms'])[1 + g %% 2]),
        'order:status', 'orderable'))
FROM (SELECT g, round((60 + random() * 80)::numeric, 4)::float8 AS x,
             round((-10 + random() * 60)::numeric, 4)::float8 AS y,
             timestamptz '2026-01-01' + random() * interval '365 days' AS t
      FROM generate_series(1, %s) g) s
"""


def add_archive(count: int) -> None:
    """A public collection `archive` of `count` scenes."""
    with psycopg.connect(autocommit=True) as conn:
        conn.execute("SET search_path TO pgstac, public")
        conn.execute("SELECT create_collection(%s)", (Jsonb({**COLLECTION, "id": "archive"}),))
        if count:
            conn.execute("SELECT setseed(0.43)")
            conn.execute(ARCHIVE_SQL, (count,))
        conn.execute("ANALYZE pgstac.items")


async def time_source() -> tuple[list[float], int]:
    """The source total alone, per country over 2026 (its areas searched as a report does)."""
    conn = await asyncpg.connect(server_settings={"jit": "off"})  # as the report runs
    try:
        year = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
        samples, pairs = [], 0
        for _ in range(5):
            start = time.perf_counter()
            pairs = await conn.fetchval(f"{SOURCE_PAIRS}{SOURCE_TOTAL}", *year, None, False)
            samples.append(time.perf_counter() - start)
        return samples, pairs
    finally:
        await conn.close()


def _admin_key() -> str:
    with psycopg.connect(autocommit=True) as conn:
        add_org(conn, "CRESDA", "CN", "main", "bench")
        return issue_key(conn, "CRESDA", ["admin"], "bench")[0]
