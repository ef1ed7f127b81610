"""Federation at scale, two whole nodes on this machine, printed as rates and ratios in one run:

- catch-up: a partner mirrors CSDR_BENCH_FED_ITEMS items (default 100,000; the catalog bench's
  synthetic sensors) from an empty start, metadata only: items per second (goal >= 1,000);
- commit on main to searchable through the partner's STAC API, p50/p95: with main's push
  webhooks waking the partner's worker (goal p95 <= 2 s), then with its polling alone (goal:
  within the poll interval, CSDR_BENCH_FED_POLL_S, default 5 s);
- a `copy` of one large asset (CSDR_BENCH_FED_ASSET_MB, default 200) by the federation copier
  (ranged GET through main's download route, size and checksum verified, renamed into place)
  against a plain streamed download of the same URL to disk: throughput ratio (goal >= 0.8).

Asserts only what the answers hold: every item arrives, every change is found, the copy is
byte-identical.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest
from psycopg.types.json import Jsonb
from pypgstac.db import PgstacDB
from pypgstac.load import Loader, Methods

from conftest import TEMPLATE_DB, free_port
from csdr_access.admin import add_org, issue_key
from csdr_access.peers import add_peer
from csdr_federation import assets
from csdr_service.checksums import checksum
from infra.local.pgcluster import Cluster
from tests.bench import catalog_rows
from tests.e2e import catalog_scenes
from tests.e2e.processes import service

ITEMS = int(os.environ.get("CSDR_BENCH_FED_ITEMS", "100000"))
POLL_S = float(os.environ.get("CSDR_BENCH_FED_POLL_S", "5"))
ASSET_MB = int(os.environ.get("CSDR_BENCH_FED_ASSET_MB", "200"))
ROUNDS = 20
GOALS = {"catch_up_items_per_s": 1000.0, "webhook_p95_s": 2.0, "copy_ratio": 0.8}


def _load(env: dict[str, str], rows_file: Path) -> None:
    """pypgstac's loader with the node's item triggers on: each item is an event of the feed."""
    options = "options='-c search_path=pgstac,public'"
    with psycopg.connect(f"{catalog_scenes.conninfo(env)} {options}", autocommit=True) as conn:
        Loader(PgstacDB(connection=conn)).load_items(
            str(rows_file), insert_mode=Methods.insert, dehydrated=True, chunksize=20_000
        )


@pytest.fixture(scope="module")
def nodes(pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Main with ITEMS items, its catalog, feed and push service; an empty partner database."""
    base = tmp_path_factory.mktemp("federation-bench")
    names = {n: f"bench_fed_{n}_{uuid.uuid4().hex[:6]}" for n in ("main", "la")}
    for name in names.values():
        pg_cluster.create_database(name, template=TEMPLATE_DB)
    envs = {n: pg_cluster.env(name) for n, name in names.items()}
    collections = [catalog_scenes.collection(s) for s in catalog_scenes.SENSORS]
    with psycopg.connect(pg_cluster.conninfo(names["main"]), autocommit=True) as conn:
        conn.execute("SET search_path TO pgstac, public")
        for collection in collections:
            conn.execute("SELECT pgstac.create_collection(%s)", (Jsonb(collection),))
        add_org(conn, "LASAC", "LA", "partner", "bench")
        key = issue_key(conn, "LASAC", ["read"], "bench")[0]
    started = time.perf_counter()
    rows = catalog_rows.write_rows(base / "items.tsv", ITEMS)
    _load(envs["main"], rows)
    rows.unlink()
    print(f"\nFederation bench setup: {ITEMS:,} items loaded on main in "
          f"{time.perf_counter() - started:.0f} s")  # fmt: skip
    ports = {n: free_port() for n in ("catalog", "feed", "push", "la_catalog", "la_feed")}
    main_env = {
        **envs["main"],
        "CSDR_INGEST_ASSETS_DIR": str(base / "main-assets"),
        "CSDR_FEDERATION_NODE_NAME": "main",
        "CSDR_FEDERATION_CATALOG_URL": f"http://127.0.0.1:{ports['catalog']}",
        "CSDR_FEDERATION_WORKER": "false",
        "CSDR_PUSH_ALLOW_PRIVATE_TARGETS": "true",
        "CSDR_PUSH_POLL_INTERVAL_S": "0.2",
        "CSDR_ACCESS_MAX_KEY_FAILURES": "100000",
    }
    la_env = {
        **envs["la"],
        "CSDR_INGEST_ASSETS_DIR": str(base / "la-assets"),
        "CSDR_FEDERATION_NODE_NAME": "la",
        "CSDR_FEDERATION_CATALOG_URL": f"http://127.0.0.1:{ports['la_catalog']}",
        "CSDR_FEDERATION_PUBLIC_URL": f"http://127.0.0.1:{ports['la_feed']}",
        "CSDR_FEDERATION_POLL_INTERVAL_S": str(POLL_S),
    }
    with ExitStack() as stack:
        urls = {
            name: stack.enter_context(service(factory, ports[name], env, base))
            for name, factory, env in (
                ("catalog", "csdr_catalog.app:create_app", main_env),
                ("feed", "csdr_federation.app:create_app", main_env),
                ("push", "csdr_push.app:create_app", main_env),
                ("la_catalog", "csdr_catalog.app:create_app", la_env),
            )
        }
        yield {"urls": urls, "ports": ports, "envs": {"main": main_env, "la": la_env},
               "key": key, "base": base, "stack": stack, "cluster": pg_cluster,
               "names": names, "collections": [c["id"] for c in collections]}  # fmt: skip
    with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        for name in names.values():
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _at_head(cluster: Cluster, name: str) -> bool:
    with psycopg.connect(cluster.conninfo(name), autocommit=True) as conn:
        row = conn.execute("SELECT at_head FROM csdr.federation_peers").fetchone()
        return bool(row and row[0])


def _count(cluster: Cluster, name: str) -> int:
    with psycopg.connect(cluster.conninfo(name), autocommit=True) as conn:
        return int(conn.execute("SELECT count(*) FROM pgstac.items").fetchone()[0])


def _searchable_after_commit(nodes: dict, tag: str) -> np.ndarray:
    """Seconds from a commit on main to the item's 200 through the partner's STAC API."""
    cluster, names = nodes["cluster"], nodes["names"]
    collection = nodes["collections"][0]
    template = next(catalog_scenes.items(1))
    seconds = []
    with (
        psycopg.connect(cluster.conninfo(names["main"]), autocommit=True) as conn,
        httpx.Client(timeout=30) as client,
    ):
        conn.execute("SET search_path TO pgstac, public")
        for n in range(ROUNDS):
            item = {**template, "id": f"{tag}-{n}", "collection": collection}
            conn.execute("SELECT pgstac.upsert_item(%s)", (Jsonb(item),))
            committed = time.perf_counter()
            url = f"{nodes['urls']['la_catalog']}/collections/{collection}/items/{item['id']}"
            while client.get(url).status_code != 200:
                if time.perf_counter() - committed > 60:
                    raise TimeoutError(f"{item['id']} not on the partner after 60 s")
                time.sleep(0.02)
            seconds.append(time.perf_counter() - committed)
            time.sleep(0.3)
    return np.array(seconds)


def _copy_ratio(nodes: dict) -> tuple[float, float, float]:
    """(copier MB/s, plain download MB/s, ratio) for one ASSET_MB file on main."""
    cluster, names = nodes["cluster"], nodes["names"]
    collection = nodes["collections"][0]
    root = Path(nodes["envs"]["main"]["CSDR_INGEST_ASSETS_DIR"])
    big = root / collection / "BIG" / "BIG.tif"
    big.parent.mkdir(parents=True, exist_ok=True)
    with big.open("wb") as f:
        for _ in range(ASSET_MB):
            f.write(os.urandom(1 << 20))
    item = {**next(catalog_scenes.items(1)), "id": "BIG", "collection": collection}
    data = {"href": str(big), "type": "image/tiff", "roles": ["data"]}
    data |= {"file:size": big.stat().st_size, "file:checksum": checksum(big)}
    item["assets"] = {"data": data}
    with psycopg.connect(cluster.conninfo(names["main"]), autocommit=True) as conn:
        conn.execute("SET search_path TO pgstac, public")
        conn.execute("SELECT pgstac.upsert_item(%s)", (Jsonb(item),))
    url = f"{nodes['urls']['catalog']}/collections/{collection}/items/BIG/assets/data"
    out = nodes["base"] / "copies"
    out.mkdir(exist_ok=True)
    size_mb = big.stat().st_size / (1 << 20)

    async def plain() -> float:
        started = time.perf_counter()
        headers = {"X-API-Key": nodes["key"]}
        async with (
            httpx.AsyncClient(timeout=300) as client,
            client.stream("GET", url, headers=headers) as r,
        ):
            assert r.status_code == 200
            with (out / "plain.tif").open("wb") as f:
                async for block in r.aiter_bytes(1 << 20):
                    f.write(block)
        return time.perf_counter() - started

    async def copier() -> float:
        task = assets.Task(collection, "BIG", "data", url, item["assets"]["data"]["file:size"],
                           item["assets"]["data"]["file:checksum"], str(out / "copy.tif"), 1,
                           nodes["key"])  # fmt: skip
        copy = out / "copy.tif"
        copy.unlink(missing_ok=True)  # else the next run resumes a whole file: a 416, no bytes
        started = time.perf_counter()
        async with httpx.AsyncClient(timeout=300) as client:
            await assets.download(client, task, copy)
        return time.perf_counter() - started

    plain_s = [asyncio.run(plain()) for _ in range(3)]
    copy_s = [asyncio.run(copier()) for _ in range(3)]
    assert (out / "copy.tif").read_bytes() == big.read_bytes()
    plain_rate, copy_rate = size_mb / min(plain_s), size_mb / min(copy_s)
    return copy_rate, plain_rate, copy_rate / plain_rate


def test_federation_at_scale(nodes: dict) -> None:
    load_before = os.getloadavg()
    cluster, names, urls = nodes["cluster"], nodes["names"], nodes["urls"]
    with psycopg.connect(cluster.conninfo(names["la"]), autocommit=True) as conn:
        add_peer(conn, "main", urls["feed"], nodes["key"], "bench",
                 push_url=urls["push"])  # fmt: skip
    started = time.perf_counter()
    nodes["stack"].enter_context(service("csdr_federation.app:create_app",
                                         nodes["ports"]["la_feed"], nodes["envs"]["la"],
                                         nodes["base"]))  # fmt: skip
    # Progress from the peer's row: counting pgstac.items while the worker creates partitions
    # deadlocks (pgSTAC's partition creation takes the parent's exclusive lock).
    while not _at_head(cluster, names["la"]):
        if time.perf_counter() - started > 3600:
            raise TimeoutError("the partner did not catch up within an hour")
        time.sleep(0.5)
    catch_up_s = time.perf_counter() - started
    assert _count(cluster, names["la"]) == ITEMS
    rate = ITEMS / catch_up_s

    def subscribed() -> Any:
        with psycopg.connect(cluster.conninfo(names["la"]), autocommit=True) as conn:
            return conn.execute("SELECT wake_subscription FROM csdr.federation_peers").fetchone()[0]

    while subscribed() is None:
        time.sleep(0.2)
    woken = _searchable_after_commit(nodes, "woken")
    # Polling alone: main's push service sends the partner nothing more.
    with psycopg.connect(cluster.conninfo(names["main"]), autocommit=True) as conn:
        conn.execute("UPDATE csdr.subscriptions SET status = 'paused'")
    polled = _searchable_after_commit(nodes, "polled")
    copy_rate, plain_rate, ratio = _copy_ratio(nodes)

    def p(a: np.ndarray, q: float) -> float:
        return float(np.percentile(a, q))

    print(
        f"\nFederation, {ITEMS:,} items (load average {load_before[0]:.1f} ->"
        f" {os.getloadavg()[0]:.1f}):\n"
        f"  catch-up, metadata only  {rate:8.0f} items/s ({catch_up_s:.0f} s;"
        f" goal >= {GOALS['catch_up_items_per_s']:.0f})\n"
        f"  commit -> searchable, woken by webhooks  p50 {p(woken, 50):.2f} s"
        f"  p95 {p(woken, 95):.2f} s (goal p95 <= {GOALS['webhook_p95_s']:.0f} s)\n"
        f"  commit -> searchable, polling every {POLL_S:.0f} s  p50 {p(polled, 50):.2f} s"
        f"  p95 {p(polled, 95):.2f} s (goal p95 <= {POLL_S:.0f} s)\n"
        f"  copy of {ASSET_MB} MB: copier {copy_rate:.0f} MB/s, plain download"
        f" {plain_rate:.0f} MB/s, ratio {ratio:.2f} (goal >= {GOALS['copy_ratio']})"
    )
