"""Item search at a million scenes: our catalog (`csdr_catalog`) against stock stac-fastapi-pgstac,
both as real one-worker uvicorn processes, and against the raw `pgstac.search()` SQL call.

Two databases hold the same items (CSDR_BENCH_ITEMS, default 1,000,000, over four collections and
five years), both loaded with pypgstac's Loader in its plain insert mode from the same dehydrated
rows (`catalog_rows.py`):
- ours: every migration of the node (pgSTAC, the indexed queryables of 0003, the tuning of 0008,
  the footprint + time + cloud index of 0012), so collections are partitioned and indexed as the
  node does it;
- stock: `pypgstac migrate` only, pgSTAC's default settings, one partition per collection.
Each server is warmed up, then each of seven queries is sent in a bounded sequential loop over one
keep-alive connection. Prints per query our p50/p95, stock p50/p95, the speed-up, each server's CPU
time per request (read from /proc: steadier than latencies on a shared machine), and our API time
over the SQL time. The SQL is `pgstac.search()` for the same search: on a session with the
catalog's read settings (csdr_catalog.db); the same call on a default session is printed beside it.
Our API no longer calls `pgstac.search()` but composes its own SQL from pgSTAC's pieces
(`csdr_catalog.item_search`, same answers): that SQL's time is printed too, with our API's time
over it (what the HTTP and Python layers add). The machine's load average is printed beside the
numbers. Asserts only that our API, pgSTAC's search() and our SQL return the same ids.

Stock answers other ids for the cloud-cover sorts from the first tie on: its database has no
`eo:cloud_cover` queryable, so pgSTAC sorts by `to_text(...)`, i.e. "10.5" before "2.3"
(ours registers the property as a number, migration 0003, and sorts by `to_float`).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import psycopg
import pytest
from pypgstac.db import PgstacDB
from pypgstac.load import Loader, Methods

from conftest import TEMPLATE_DB, free_port
from csdr_catalog.db import READ_SESSION_SETTINGS, read_connection, read_pool_settings
from csdr_catalog.item_search import ItemSearch
from infra.db.migrate import migrate_pgstac
from infra.local.pgcluster import Cluster
from tests.bench import catalog_rows
from tests.e2e import catalog_scenes
from tests.e2e.processes import service

ITEMS = int(os.environ.get("CSDR_BENCH_ITEMS", "1000000"))
WARMUP = 3
ROUNDS = 60  # requests per query against ours and SQL
STOCK_ROUNDS = 30  # stock is slower: fewer rounds, and the time budget below
BUDGET_S = 20.0  # a loop stops early once it has spent this long (after at least 5 requests)
LIMIT = 10
# The node's row triggers on pgstac.items, off during the bulk load (see load_items).
ITEM_TRIGGERS = ("csdr_item_events", "csdr_tile_changes")
GOALS = {"p50_ms": 15.0, "p95_ms": 40.0, "speedup": 2.0, "api_over_sql": 1.3}


@dataclass
class Query:
    """One question asked three ways: through an API by HTTP, and to pgSTAC in SQL."""

    name: str
    method: str
    path: str
    search: dict[str, Any]
    """The pgSTAC search the API call amounts to (what SQL is timed with)."""
    params: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None

    def send(self, client: httpx.Client) -> httpx.Response:
        """Send the HTTP request."""
        if self.method == "GET":
            return client.get(self.path, params=self.params)
        return client.post(self.path, json=self.body)


CLOUD_LT_20 = {"op": "<", "args": [{"property": "eo:cloud_cover"}, 20]}
POINT = {"type": "Point", "coordinates": [116.39, 39.91]}  # Beijing
QUERIES = [
    Query(
        "bbox+date+cloud GET cql2-text",
        "GET",
        "/search",
        {
            "bbox": [110.0, 30.0, 115.0, 35.0],
            "datetime": "2023-03-01T00:00:00Z/2023-08-31T23:59:59Z",
            "filter": CLOUD_LT_20,
            "filter-lang": "cql2-json",
            "limit": LIMIT,
        },
        params={
            "bbox": "110,30,115,35",
            "datetime": "2023-03-01T00:00:00Z/2023-08-31T23:59:59Z",
            "filter": "eo:cloud_cover < 20",
            "filter-lang": "cql2-text",
            "limit": str(LIMIT),
        },
    ),
    Query(
        "bbox+date+cloud POST cql2-json",
        "POST",
        "/search",
        {
            "bbox": [100.0, 25.0, 106.0, 31.0],
            "datetime": "2022-01-01T00:00:00Z/2022-12-31T23:59:59Z",
            "filter": CLOUD_LT_20,
            "filter-lang": "cql2-json",
            "limit": LIMIT,
        },
        body={
            "bbox": [100.0, 25.0, 106.0, 31.0],
            "datetime": "2022-01-01T00:00:00Z/2022-12-31T23:59:59Z",
            "filter": CLOUD_LT_20,
            "filter-lang": "cql2-json",
            "limit": LIMIT,
        },
    ),
    Query(
        "collection sorted by date",
        "POST",
        "/search",
        {
            "collections": ["gf2-pms-l1a"],
            "sortby": [{"field": "datetime", "direction": "desc"}],
            "limit": LIMIT,
        },
        body={
            "collections": ["gf2-pms-l1a"],
            "sortby": [{"field": "datetime", "direction": "desc"}],
            "limit": LIMIT,
        },
    ),
    Query(
        "collection items page",
        "GET",
        "/collections/gf1-wfv-l1a/items",
        {"collections": ["gf1-wfv-l1a"], "limit": LIMIT},
        params={"limit": str(LIMIT)},
    ),
    Query(
        "small bbox",
        "GET",
        "/search",
        {"bbox": [121.4, 31.1, 121.6, 31.3], "limit": LIMIT},
        params={"bbox": "121.4,31.1,121.6,31.3", "limit": str(LIMIT)},
    ),
    Query(
        "sort by cloud cover",
        "POST",
        "/search",
        {"sortby": [{"field": "properties.eo:cloud_cover", "direction": "asc"}], "limit": LIMIT},
        body={
            "sortby": [{"field": "properties.eo:cloud_cover", "direction": "asc"}],
            "limit": LIMIT,
        },
    ),
    Query(
        "point+date+sort",
        "POST",
        "/search",
        {
            "intersects": POINT,
            "datetime": "2021-01-01T00:00:00Z/2022-12-31T23:59:59Z",
            "sortby": [{"field": "properties.eo:cloud_cover", "direction": "asc"}],
            "limit": LIMIT,
        },
        body={
            "intersects": POINT,
            "datetime": "2021-01-01T00:00:00Z/2022-12-31T23:59:59Z",
            "sortby": [{"field": "properties.eo:cloud_cover", "direction": "asc"}],
            "limit": LIMIT,
        },
    ),
]


@dataclass
class Timings:
    """One query's latencies against one target, and the ids of its answer."""

    seconds: list[float]
    ids: list[str]
    cpu_ms: float = float("nan")
    """The server process's CPU time per request (HTTP targets only)."""
    answers: list[list[str]] = field(default_factory=list)
    """The ids of every call, warm-up included, in order."""

    def ms(self, q: float) -> float:
        return float(np.percentile(self.seconds, q)) * 1000


def server_cpu_s(base: str) -> float:
    """CPU time (user + system) used so far by the uvicorn process serving `base`."""
    port = base.rsplit(":", 1)[1]
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
            if b"uvicorn" in args and b"--port" in args and port.encode() in args:
                stat = (cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()
                return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:  # a process that ended while we looked
            continue
    raise LookupError(f"no uvicorn process serves {base}")


def bounded_loop(call: Callable[[], list[str]], rounds: int, same: bool = True) -> Timings:
    """Warm up, then call up to `rounds` times or until BUDGET_S is spent (at least 5 calls);
    with `same`, every call must answer the ids of the first."""
    answers = [call() for _ in range(WARMUP)]
    seconds: list[float] = []
    spent = 0.0
    while len(seconds) < rounds and (len(seconds) < 5 or spent < BUDGET_S):
        start = time.perf_counter()
        got = call()
        seconds.append(time.perf_counter() - start)
        spent += seconds[-1]
        assert not same or got == answers[0], "the same request answered different ids"
        answers.append(got)
    return Timings(seconds, answers[0], answers=answers)


def variant(query: Query, k: int) -> Query:
    """`query` made a search never asked before by `k`, answering about the same: its box or
    point moved by k micro-degrees, or (with neither) a start time k microseconds into 2019,
    before any item. Each variant's clauses and plan are made anew (no cache of ours helps)."""
    shift = k * 1e-6
    search, params = dict(query.search), dict(query.params)
    body = dict(query.body) if query.body is not None else None
    if "bbox" in search:
        search["bbox"] = [round(v + shift, 6) for v in search["bbox"]]
        if body is not None:
            body["bbox"] = search["bbox"]
        else:
            params["bbox"] = ",".join(str(v) for v in search["bbox"])
    elif "intersects" in search:
        lon, lat = search["intersects"]["coordinates"]
        search["intersects"] = {"type": "Point", "coordinates": [lon + shift, lat + shift]}
        assert body is not None
        body["intersects"] = search["intersects"]
    else:
        search["datetime"] = f"2019-01-01T00:00:00.{k:06d}Z/.."
        if body is not None:
            body["datetime"] = search["datetime"]
        else:
            params["datetime"] = search["datetime"]
    return Query(query.name, query.method, query.path, search, params, body)


def variants(query: Query, distinct: bool) -> Iterator[Query]:
    """The query again and again, or (`distinct`) its variants 1, 2, 3, ..."""
    if not distinct:
        return itertools.repeat(query)
    return (variant(query, k) for k in itertools.count(1))


def http_loop(base: str, query: Query, rounds: int, distinct: bool = False) -> Timings:
    """Time `query` (or, `distinct`, its variants) against an API over one keep-alive
    connection, and the server's CPU."""
    asked = variants(query, distinct)
    with httpx.Client(base_url=base, timeout=120) as client:

        def call() -> list[str]:
            resp = next(asked).send(client)
            assert resp.status_code == 200, f"{base}{query.path}: {resp.status_code} {resp.text}"
            return [f["id"] for f in orjson.loads(resp.content)["features"]]

        if not distinct:
            call()  # first-request costs (e.g. the CQL2 parser's set-up) are not per-request
        cpu_s = server_cpu_s(base)
        timings = bounded_loop(call, rounds, same=not distinct)
        requests = WARMUP + len(timings.seconds)
        timings.cpu_ms = (server_cpu_s(base) - cpu_s) * 1000 / requests
        return timings


def sql_loop(
    env: dict[str, str],
    query: Query,
    rounds: int,
    session: dict[str, str],
    distinct: bool = False,
) -> Timings:
    """Time `pgstac.search()` for the query's search (or, `distinct`, its variants') as our API
    asks it (items dehydrated, see csdr_catalog.settings), fetched as text, on one connection
    with `session` settings."""
    settings = {"search_path": "pgstac,public", **session}
    options = "options='" + " ".join(f"-c {k}={v}" for k, v in settings.items()) + "'"
    asked = variants(query, distinct)
    with psycopg.connect(f"{catalog_scenes.conninfo(env)} {options}", autocommit=True) as conn:

        def call() -> list[str]:
            body = orjson.dumps({**next(asked).search, "conf": {"nohydrate": True}}).decode()
            row = conn.execute("SELECT search(%s::text::jsonb)::text", (body,)).fetchone()
            assert row is not None
            return [f["id"] for f in orjson.loads(row[0])["features"]]

        return bounded_loop(call, rounds, same=not distinct)


def composed_loop(env: dict[str, str], query: Query, rounds: int) -> Timings:
    """Time the catalog's own SQL for the query's search (`csdr_catalog.item_search`: pgSTAC's
    clauses kept, one prepared ORDER BY/LIMIT statement) on one connection set up as the
    catalog's read pool sets its connections up: the database's share of an API answer."""
    search = {**query.search, "conf": {"nohydrate": True}}
    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(read_connection(read_pool_settings(env)))
    try:
        composed = ItemSearch()

        def call() -> list[str]:
            page = loop.run_until_complete(composed.search(conn, search))
            return [f["id"] for f in page.features]

        return bounded_loop(call, rounds)
    finally:
        loop.run_until_complete(conn.close())
        loop.close()


def check_rows(env: dict[str, str], rows: list[tuple[str, ...]]) -> None:
    """The fast rows equal what pypgstac's Loader makes of the same items, hydrated."""
    options = "options='-c search_path=pgstac,public'"
    with psycopg.connect(f"{catalog_scenes.conninfo(env)} {options}", autocommit=True) as conn:
        loader = Loader(PgstacDB(connection=conn))
        for row in rows:
            want = loader.format_item(catalog_rows.hydrated(row))
            assert (want["id"], want["geometry"], want["collection"]) == row[:3]
            assert (want["datetime"], want["end_datetime"]) == row[3:5]
            assert orjson.loads(want["content"]) == orjson.loads(row[5])


def load_collections(env: dict[str, str]) -> None:
    """Load the sensors' collections with pypgstac's Loader."""
    options = "options='-c search_path=pgstac,public'"
    with psycopg.connect(f"{catalog_scenes.conninfo(env)} {options}", autocommit=True) as conn:
        cols = [catalog_scenes.collection(s) for s in catalog_scenes.SENSORS]
        Loader(PgstacDB(connection=conn)).load_collections(iter(cols), insert_mode=Methods.insert)


def load_items(env: dict[str, str], rows_file: Path, timings: dict[str, float], name: str) -> None:
    """Load the rows file with pypgstac's Loader, then VACUUM ANALYZE."""
    options = "options='-c search_path=pgstac,public'"
    with psycopg.connect(f"{catalog_scenes.conninfo(env)} {options}", autocommit=True) as conn:
        loader = Loader(PgstacDB(connection=conn))
        # The node's item triggers record a row per inserted item: the push outbox (migration
        # 0004, ~0.3 ms an item here, 60% of this load) and the tiler's pyramid changes (0011).
        # A bulk archive load is no news to push subscribers and draws no map tiles in this
        # bench, and neither plays a part in search, so both are off while the archive loads.
        triggers = [
            row[0]
            for row in conn.execute(
                "SELECT tgname FROM pg_trigger WHERE tgname = ANY(%s)"
                " AND tgrelid = 'pgstac.items'::regclass ORDER BY tgname",
                (list(ITEM_TRIGGERS),),
            )
        ]
        for trigger in triggers:
            conn.execute(f"ALTER TABLE pgstac.items DISABLE TRIGGER {trigger}")
        start = time.perf_counter()
        loader.load_items(
            str(rows_file), insert_mode=Methods.insert, dehydrated=True, chunksize=50_000
        )
        timings[f"{name} load"] = time.perf_counter() - start
        for trigger in triggers:
            conn.execute(f"ALTER TABLE pgstac.items ENABLE TRIGGER {trigger}")
        start = time.perf_counter()
        conn.execute("VACUUM ANALYZE pgstac.items")
        timings[f"{name} vacuum analyze"] = time.perf_counter() - start


@pytest.fixture(scope="module")
def databases(
    pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, dict[str, str]]]:
    """`ours` and `stock`, each holding the same ITEMS items."""
    tag = uuid.uuid4().hex[:8]
    names = {"ours": f"bench_cat_ours_{tag}", "stock": f"bench_cat_stock_{tag}"}
    pg_cluster.create_database(names["ours"], template=TEMPLATE_DB)
    pg_cluster.create_database(names["stock"])
    envs = {k: pg_cluster.env(v) for k, v in names.items()}
    timings: dict[str, float] = {}
    try:
        migrate_pgstac(pg_cluster.conninfo(names["stock"]))
        for env in envs.values():
            load_collections(env)
        start = time.perf_counter()
        rows_file = catalog_rows.write_rows(tmp_path_factory.mktemp("rows") / "items.tsv", ITEMS)
        timings["generate rows"] = time.perf_counter() - start
        with rows_file.open() as f:
            # 200 rows across every collection and year.
            lines = itertools.islice(f, 0, None, max(1, ITEMS // 200))
            sample = [tuple(line.rstrip("\n").split("\t")) for line in lines]
        check_rows(envs["stock"], sample)
        start = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            done = [pool.submit(load_items, envs[k], rows_file, timings, k) for k in envs]
            for future in done:
                future.result()
        timings["both loads, in parallel"] = time.perf_counter() - start
        rows_file.unlink()
        print(
            f"\nCatalog bench setup, {ITEMS:,} items: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
        )
        yield envs
    finally:
        with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
            for name in names.values():
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def apis(
    databases: dict[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """Our catalog on `ours`, stock stac-fastapi-pgstac on `stock`: name -> base URL."""
    logs = tmp_path_factory.mktemp("catalog-bench-logs")
    with ExitStack() as stack:
        yield {
            "ours": stack.enter_context(
                service("csdr_catalog.app:create_app", free_port(), databases["ours"], logs)
            ),
            "stock": stack.enter_context(
                service(
                    "stac_fastapi.pgstac.app:create_app",
                    free_port(),
                    databases["stock"],
                    logs,
                    ready_path="/_mgmt/ping",
                )
            ),
        }


def test_search_ours_vs_stock_vs_sql(
    databases: dict[str, dict[str, str]], apis: dict[str, str]
) -> None:
    load_before = os.getloadavg()
    rows = []
    for query in QUERIES:
        ours = http_loop(apis["ours"], query, ROUNDS)
        stock = http_loop(apis["stock"], query, STOCK_ROUNDS)
        sql = sql_loop(databases["ours"], query, ROUNDS, READ_SESSION_SETTINGS)
        sql_default = sql_loop(databases["ours"], query, ROUNDS, {})
        composed = composed_loop(databases["ours"], query, ROUNDS)
        rows.append((query, ours, stock, sql, sql_default, composed))
    fresh = []  # every request a search never asked before
    for query in QUERIES:
        ours = http_loop(apis["ours"], query, ROUNDS, distinct=True)
        stock = http_loop(apis["stock"], query, STOCK_ROUNDS, distinct=True)
        sql = sql_loop(databases["ours"], query, ROUNDS, READ_SESSION_SETTINGS, distinct=True)
        fresh.append((query, ours, stock, sql))
    load_after = os.getloadavg()

    print(
        f"\nItem search at {ITEMS:,} items, limit {LIMIT}, sequential keep-alive requests "
        f"(ours and SQL up to {ROUNDS}, stock up to {STOCK_ROUNDS}, each loop <= {BUDGET_S:.0f} s)"
        f"; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
        f" (this machine has {os.cpu_count()} CPUs, shared)"
    )
    print(
        f"{'query':<32}{'ours p50':>9}{'p95':>7}{'stock p50':>10}{'p95':>7}{'speedup':>8}"
        f"{'CPU/req ours':>13}{'stock':>6}{'SQL p50':>8}{'API/SQL':>8}{'SQL default':>12}"
        f"{'our SQL':>8}{'API/ours':>9}"
    )
    for query, ours, stock, sql, sql_default, composed in rows:
        speedup, over_sql = stock.ms(50) / ours.ms(50), ours.ms(50) / sql.ms(50)
        print(
            f"{query.name:<32}{ours.ms(50):>9.1f}{ours.ms(95):>7.1f}{stock.ms(50):>10.1f}"
            f"{stock.ms(95):>7.1f}{speedup:>7.1f}x{ours.cpu_ms:>13.1f}{stock.cpu_ms:>6.1f}"
            f"{sql.ms(50):>8.1f}{over_sql:>7.2f}x{sql_default.ms(50):>12.1f}"
            f"{composed.ms(50):>8.1f}{ours.ms(50) / composed.ms(50):>8.2f}x"
        )
    print(
        "ms; CPU/req: the server process's CPU time per request; SQL: pgstac.search() on a session"
        " with the catalog's read settings, SQL default: on a default session; our SQL: the"
        " catalog's own SQL for the search (csdr_catalog.item_search), API/ours: our API over it"
    )
    print(
        "\nThe same queries, every request a search never asked before (box or point moved by"
        " a micro-degree, or a start time a microsecond later, each time: no clauses or plans"
        " kept by our catalog apply)"
    )
    print(
        f"{'query':<32}{'ours p50':>9}{'p95':>7}{'stock p50':>10}{'speedup':>8}"
        f"{'SQL p50':>8}{'API/SQL':>8}"
    )
    for query, ours, stock, sql in fresh:
        speedup, over_sql = stock.ms(50) / ours.ms(50), ours.ms(50) / sql.ms(50)
        print(
            f"{query.name:<32}{ours.ms(50):>9.1f}{ours.ms(95):>7.1f}{stock.ms(50):>10.1f}"
            f"{speedup:>7.1f}x{sql.ms(50):>8.1f}{over_sql:>7.2f}x"
        )
    # Ours must answer what pgSTAC's own search() answers. Stock is only a baseline: where it
    # differs the ids are printed (the cloud-cover sorts: see the module docstring).
    wrong = [
        q.name
        for q, ours, _, sql, default, composed in rows
        if not ours.ids == sql.ids == default.ids == composed.ids
    ]
    wrong += [
        f"{q.name} (distinct)"
        for q, ours, _, sql in fresh
        if any(a != b for a, b in zip(ours.answers, sql.answers, strict=False))
    ]
    for query, ours, stock, sql, *_ in rows:
        if not ours.ids == stock.ids == sql.ids:
            print(f"{query.name} ids:\n  ours  {ours.ids}\n  stock {stock.ids}\n  SQL   {sql.ids}")
    print(
        f"Goals: p50 <= {GOALS['p50_ms']:.0f} ms, p95 <= {GOALS['p95_ms']:.0f} ms, "
        f">= {GOALS['speedup']:.0f}x stock at p50, API/SQL <= {GOALS['api_over_sql']}x"
    )
    # Equal ids prove nothing if a query finds nothing; checked after printing, to see all rows.
    assert all(ours.ids for _, ours, *_ in rows), "a query found no items"
    assert not wrong, f"our API, pgstac.search() and our SQL answer different ids for: {wrong}"
