"""Reads from a streaming standby: a primary (the session's cluster) and a standby made from it
with pg_basebackup; the catalog and the tiler read from the standby (CSDR_DB_READ_*) and write
to the primary. Searches and tiles are answered by the standby (an item committed while its
replay is paused stays unseen until replay resumes), writes still work, and once the standby
stops, reads answer 503 within seconds: no fallback, no hang."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import psycopg
import pytest

from conftest import TEMPLATE_DB, free_port
from csdr_access.admin import add_org, issue_key
from infra.local.pgcluster import Cluster
from services.tiler.tests.scenes import Ingested, ingest
from tests.e2e.processes import service
from tests.support.standby import replayed, standby_of

COLLECTION = "replica-scenes"
# A standby that stopped must answer within this (the pools' connect and wait timeouts are 3 s
# and 5 s; the request time limit, 30 s, is what a hang would hit).
FAIL_FAST_S = 8.0


@pytest.fixture(scope="module")
def standby(pg_cluster: Cluster) -> Iterator[Cluster]:
    """A hot standby of the session's cluster."""
    with standby_of(pg_cluster) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def replicated(pg_cluster: Cluster, standby: Cluster, tmp_path_factory) -> Iterator[dict]:
    """The catalog and the tiler over a fresh database, reading from the standby."""
    name = f"replica_{uuid.uuid4().hex[:8]}"
    pg_cluster.create_database(name, template=TEMPLATE_DB)
    primary, replica = pg_cluster.conninfo(name), standby.conninfo(name)
    base = tmp_path_factory.mktemp("replica")
    with psycopg.connect(primary, autocommit=True) as conn:
        first = ingest(conn, base / "a", COLLECTION)
        add_org(conn, "Replica node", "CN", "main", "test")
        key = issue_key(conn, "Replica node", ["ingest"], "test")[0]
    replayed(primary, replica)
    env = {
        **pg_cluster.env(name),
        "CSDR_DB_READ_HOST": "127.0.0.1",
        "CSDR_DB_READ_PORT": str(standby.port),
        "CSDR_ACCESS_MAX_KEY_FAILURES": "10000",
    }
    with ExitStack() as stack:
        catalog = stack.enter_context(
            service("csdr_catalog.app:create_app", free_port(), env, base, timeout_s=180)
        )
        tiler = stack.enter_context(
            service("csdr_tiler.app:create_app", free_port(), env, base, timeout_s=180)
        )
        yield {
            "catalog": catalog,
            "tiler": tiler,
            "primary": primary,
            "replica": replica,
            "base": base,
            "first": first,
            "headers": {"X-API-Key": key},
        }
    with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def search_ids(node: dict) -> list[str]:
    r = httpx.post(
        f"{node['catalog']}/search", json={"collections": [COLLECTION]}, headers=node["headers"]
    )
    assert r.status_code == 200, r.text
    return sorted(f["id"] for f in r.json()["features"])


def tile(node: dict, scene: Ingested) -> httpx.Response:
    t = scene.centre_tile(13)
    url = (
        f"{node['tiler']}{scene.url}/presets/true-color/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png"
    )
    return httpx.get(url, headers=node["headers"], timeout=30)


def test_searches_and_tiles_come_from_the_standby_and_writes_go_to_the_primary(replicated):
    node = replicated
    first = node["first"]
    assert search_ids(node) == [first.item["id"]]
    r = tile(node, first)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"

    # Replay paused: a new item is committed on the primary, the standby does not have it, and
    # neither the catalog nor the tiler sees it: both read from the standby.
    with psycopg.connect(node["replica"], autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
    try:
        with psycopg.connect(node["primary"], autocommit=True) as conn:
            second = ingest(conn, node["base"] / "b", COLLECTION)
        assert search_ids(node) == [first.item["id"]]
        assert tile(node, second).status_code == 404
    finally:
        with psycopg.connect(node["replica"], autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")
    lag_s = replayed(node["primary"], node["replica"])
    assert search_ids(node) == sorted([first.item["id"], second.item["id"]])
    assert tile(node, second).status_code == 200
    print(f"replayed {lag_s * 1000:.0f} ms after resuming")
    # A collection mosaic: read on the primary (pgSTAC's geometrysearch writes a temporary table,
    # which a standby refuses; csdr_tiler.db).
    t = first.centre_tile(13)
    mosaic = (
        f"/collections/{COLLECTION}/presets/true-color/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png"
    )
    r = httpx.get(node["tiler"] + mosaic, headers=node["headers"], timeout=60)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text

    # Writes go to the primary: a search registration, and the key's use.
    body = {"collections": [COLLECTION]}
    r = httpx.post(f"{node['tiler']}/searches/register", json=body, headers=node["headers"])
    assert r.status_code == 200, r.text
    search_id = r.json()["id"]
    with psycopg.connect(node["primary"]) as conn:
        assert conn.execute(
            "SELECT 1 FROM pgstac.searches WHERE hash = %s", (search_id,)
        ).fetchone()
        [[used]] = conn.execute("SELECT count(last_used_at) FROM csdr.api_keys").fetchall()
    assert used == 1
    # Answered once the standby has it: usable at once (the access check reads the standby).
    info = httpx.get(f"{node['tiler']}/searches/{search_id}/info", headers=node["headers"])
    assert info.status_code == 200, info.text
    listed = httpx.get(f"{node['tiler']}/searches/", headers=node["headers"]).json()
    assert search_id in {s["search"]["hash"] for s in listed["searches"]}


def test_reads_fail_fast_with_503_once_the_standby_stops(replicated, standby):
    node = replicated
    assert search_ids(node)
    standby.stop()
    for url, send in (
        (f"{node['catalog']}/search", lambda u: httpx.post(u, json={}, timeout=60)),
        (f"{node['catalog']}/collections/{COLLECTION}/items", lambda u: httpx.get(u, timeout=60)),
        (f"{node['catalog']}/readyz", lambda u: httpx.get(u, timeout=60)),
        (f"{node['tiler']}{node['first'].url}/info", lambda u: httpx.get(u, timeout=60)),
        (f"{node['tiler']}/readyz", lambda u: httpx.get(u, timeout=60)),
    ):
        start = time.monotonic()
        r = send(url)
        took = time.monotonic() - start
        assert r.status_code == 503, (url, r.status_code, r.text)
        assert took < FAIL_FAST_S, (url, took)
