"""Push end to end: ingest (POST /jobs), the catalog's transactions API and the push service as
real processes over one database; a webhook receiver on 127.0.0.1 verifies every delivery with
`standardwebhooks`. The receiver goes down for 30 s, the push worker is SIGKILLed mid-delivery:
nothing is lost, and a repeated delivery carries the same webhook-id. Writers use a key with the
ingest scope; the subscriber is a partner organisation with a read key."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from conftest import TEMPLATE_DB, free_port
from csdr_access.admin import add_org, issue_key
from csdr_ingest.synthetic import DEMO_SCENES, Scene, write_scene
from infra.local.pgcluster import Cluster
from services.push.tests.receiver import Receiver
from services.push.tests.samples import SECRET, stac_item
from tests.e2e.processes import service

pytestmark = pytest.mark.slow

DELTA = [118.5, 37.5, 119.5, 38.5]  # the Yellow River delta, where the demo scenes lie
CLEAR_OR_UNKNOWN = "eo:cloud_cover IS NULL OR eo:cloud_cover <= 20"
PUSH_ENV = {
    "CSDR_PUSH_ALLOW_PRIVATE_TARGETS": "true",
    "CSDR_PUSH_POLL_INTERVAL_S": "0.5",
    "CSDR_PUSH_BACKOFF_BASE_S": "0.5",
    "CSDR_PUSH_BACKOFF_MAX_S": "4",
    "CSDR_PUSH_MAX_ATTEMPTS": "100",
    "CSDR_PUSH_TIMEOUT_S": "5",
    "CSDR_PUSH_LEASE_S": "8",
}


@dataclass
class PushNode:
    catalog: str
    ingest: str
    push: str
    env: dict[str, str]
    base: Path
    push_port: int
    writer_key: str = ""
    reader_key: str = ""
    push_proc: subprocess.Popen[bytes] | None = None

    def start_push(self) -> None:
        """Start the push service as its own process (so a test can SIGKILL it)."""
        log = open(self.base / f"push-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115
        self.push_proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "csdr_push.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.push_port),
                "--no-access-log",
            ],
            env={**os.environ, **self.env, **PUSH_ENV},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            assert self.push_proc.poll() is None, "push exited at start"
            try:
                if httpx.get(f"{self.push}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "push not ready"
            time.sleep(0.2)

    def kill_push(self, sig: int = signal.SIGKILL) -> None:
        assert self.push_proc is not None
        self.push_proc.send_signal(sig)
        self.push_proc.wait(timeout=30)


@pytest.fixture(scope="module")
def node(pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PushNode]:
    name = f"e2e_push_{uuid.uuid4().hex[:8]}"
    pg_cluster.create_database(name, template=TEMPLATE_DB)
    base = tmp_path_factory.mktemp("push-node")
    env = {
        **pg_cluster.env(name),
        "CSDR_INGEST_ASSETS_DIR": str(base / "assets"),
        "CSDR_INGEST_POLL_INTERVAL_S": "0.2",
        "CSDR_CATALOG_TRANSACTIONS": "true",
    }
    push_port = free_port()
    with ExitStack() as stack:
        catalog = stack.enter_context(
            service("csdr_catalog.app:create_app", free_port(), env, base)
        )
        ingest = stack.enter_context(service("csdr_ingest.app:create_app", free_port(), env, base))
        env["CSDR_PUSH_CATALOG_URL"] = catalog
        n = PushNode(
            catalog,
            ingest,
            f"http://127.0.0.1:{push_port}",
            env,
            base,
            push_port,
            *keys(pg_cluster.conninfo(name)),
        )
        n.start_push()
        try:
            yield n
        finally:
            if n.push_proc and n.push_proc.poll() is None:
                n.kill_push(signal.SIGTERM)
    with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(free_port()).start()
    yield r
    r.stop()


def subscribe(node: PushNode, receiver: Receiver, collection: str) -> dict[str, Any]:
    ensure_collection(node, collection)  # a partner may name only collections it can see
    r = httpx.post(
        f"{node.push}/subscriptions",
        json={
            "collections": [collection],
            "bbox": DELTA,
            "filter": CLEAR_OR_UNKNOWN,
            "webhook": {"url": receiver.url, "secret": SECRET},
        },
        timeout=10,
        headers={"Authorization": f"Bearer {node.reader_key}"},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def ingest(node: PushNode, scene: Scene, collection: str) -> None:
    (node.base / "scenes").mkdir(exist_ok=True)
    path = write_scene(scene, node.base / "scenes")
    headers = {"X-API-Key": node.writer_key}
    job = httpx.post(
        f"{node.ingest}/jobs",
        json={"source": str(path), "collection": collection},
        timeout=10,
        headers=headers,
    ).json()
    deadline = time.monotonic() + 120
    while job["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
        job = httpx.get(f"{node.ingest}/jobs/{job['id']}", timeout=10, headers=headers).json()
    assert job["status"] == "succeeded", job


def keys(conninfo: str) -> tuple[str, str]:
    """A key with the ingest scope (ingest and the transactions API write only with one), and a
    partner organisation's read key for the subscriptions."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        add_org(conn, "Test writer", "CN", "main", "test")
        add_org(conn, "Test partner", "TH", "partner", "test")
        return (
            issue_key(conn, "Test writer", ["ingest"], "test")[0],
            issue_key(conn, "Test partner", ["read"], "test")[0],
        )


def post_item(node: PushNode, collection: str, item_id: str, **props: Any) -> None:
    item = {**stac_item(item_id, **props), "collection": collection}
    r = httpx.post(
        f"{node.catalog}/collections/{collection}/items",
        json=item,
        timeout=30,
        headers={"X-API-Key": node.writer_key},
    )
    assert r.status_code in (200, 201), r.text


def ensure_collection(node: PushNode, collection: str) -> None:
    from services.push.tests.samples import COLLECTION

    if httpx.get(f"{node.catalog}/collections/{collection}", timeout=10).status_code == 200:
        return
    r = httpx.post(
        f"{node.catalog}/collections",
        json={**COLLECTION, "id": collection},
        timeout=30,
        headers={"X-API-Key": node.writer_key},
    )
    assert r.status_code in (200, 201), r.text


def by_item(receiver: Receiver) -> dict[str, set[str]]:
    """item id -> the webhook-ids its deliveries carried (each verified)."""
    ids: dict[str, set[str]] = defaultdict(set)
    for got in receiver.received:
        event = got.verified(SECRET)
        assert got.headers["webhook-id"] == event["id"]
        ids[event["subject"]].add(event["id"])
    return ids


def small(name: str, west: float = DEMO_SCENES[0].west, north: float = DEMO_SCENES[0].north):
    return Scene(
        **{**DEMO_SCENES[0].__dict__, "name": name, "size": 400, "west": west, "north": north}
    )


def test_ingested_and_transactions_items_are_pushed_once(node, receiver):
    subscribe(node, receiver, "e2e-push")
    ingest(node, small("DELTA_SCENE"), "e2e-push")
    ingest(node, small("FAR_SCENE", west=300_000, north=3_000_000), "e2e-push")  # ~27 N, 115 E
    post_item(node, "e2e-push", "TX_CLEAR", **{"eo:cloud_cover": 5})
    post_item(node, "e2e-push", "TX_CLOUDY", **{"eo:cloud_cover": 80})
    events = receiver.wait_for(2, SECRET, timeout_s=60)
    time.sleep(1.5)  # anything extra would have arrived by now
    assert by_item(receiver) == {e["subject"]: {e["id"]} for e in events}
    assert set(by_item(receiver)) == {"DELTA_SCENE", "TX_CLEAR"}
    assert len(receiver.received) == 2
    scene = next(e for e in events if e["subject"] == "DELTA_SCENE")
    assert scene["type"] == "org.csdr.item.created"
    assert scene["data"]["assets"]["data"]["href"].endswith(".tif")
    self_link = next(link["href"] for link in scene["data"]["links"] if link["rel"] == "self")
    assert httpx.get(self_link, timeout=10).json()["id"] == "DELTA_SCENE"  # the link works


def test_receiver_down_30_s_loses_nothing(node, receiver):
    ensure_collection(node, "e2e-down")
    subscribe(node, receiver, "e2e-down")
    receiver.stop()
    started = time.monotonic()
    ids = [f"DOWN_{n}" for n in range(6)]
    for item_id in ids:  # spread over the outage
        post_item(node, "e2e-down", item_id, **{"eo:cloud_cover": 1})
        time.sleep(4)
    time.sleep(max(0.0, 30 - (time.monotonic() - started)))
    assert receiver.received == []
    receiver.start()
    receiver.wait_for(len(ids), SECRET, timeout_s=60)
    delivered = by_item(receiver)
    assert set(delivered) == set(ids)
    assert all(len(webhook_ids) == 1 for webhook_ids in delivered.values()), delivered


def test_worker_killed_mid_delivery_loses_nothing(node, receiver):
    ensure_collection(node, "e2e-kill")
    sub = subscribe(node, receiver, "e2e-kill")
    receiver.delay_s = 3  # the worker waits on the answer when it is killed
    post_item(node, "e2e-kill", "KILL_1", **{"eo:cloud_cover": 1})
    deadline = time.monotonic() + 30
    while not receiver.received:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    node.kill_push(signal.SIGKILL)  # mid-delivery: the request is in flight
    post_item(node, "e2e-kill", "KILL_2", **{"eo:cloud_cover": 1})  # committed while push is dead
    receiver.delay_s = 0
    node.start_push()
    deadline = time.monotonic() + 60
    while True:
        deliveries = httpx.get(
            f"{node.push}/subscriptions/{sub['id']}/deliveries",
            timeout=10,
            headers={"X-API-Key": node.reader_key},
        ).json()["deliveries"]
        if len(deliveries) == 2 and all(d["status"] == "delivered" for d in deliveries):
            break
        assert time.monotonic() < deadline, deliveries
        time.sleep(0.2)
    delivered = by_item(receiver)
    assert set(delivered) == {"KILL_1", "KILL_2"}
    assert all(len(webhook_ids) == 1 for webhook_ids in delivered.values()), delivered
    assert len([r for r in receiver.received if "KILL_1" in r.body.decode()]) >= 2  # repeated
    killed = next(d for d in deliveries if d["attempts"] >= 2)
    assert {r.headers["webhook-id"] for r in receiver.received if b"KILL_1" in r.body} == {
        killed["id"]
    }


def test_feed_parses_with_feedparser(node, receiver):
    import feedparser

    ensure_collection(node, "e2e-feed")
    sub = subscribe(node, receiver, "e2e-feed")
    for n in range(3):
        post_item(node, "e2e-feed", f"FEED_{n}", **{"eo:cloud_cover": n})
    receiver.wait_for(3, SECRET, timeout_s=30)
    feed = f"{node.push}/subscriptions/{sub['id']}/feed"
    assert httpx.get(feed).status_code == 401
    parsed = feedparser.parse(httpx.get(feed, params={"api_key": node.reader_key}).content)
    assert not parsed.bozo, parsed.bozo_exception
    assert [e.title for e in parsed.entries] == [f"FEED_{n} (created)" for n in (2, 1, 0)]
    # The item's link carries the key (QGIS-like readers send no headers) and opens.
    item = {link.rel: link.href for link in parsed.entries[0].links}["alternate"]
    assert f"api_key={node.reader_key}" in item
    assert httpx.get(item, timeout=10).json()["id"] == "FEED_2"
