"""SIGKILL of each service in turn while it serves load, then a restart on the same port (each
comes back while the next is killed): catalog and tiler under searches and tiles, ingest mid-job
(its COG half written, a job queued behind), push with deliveries in flight at the subscriber.
Searches and tiles answer 200 again and never a 5xx; every queued job ends once, succeeded, and
no lease stays held; every item has its readable assets and nothing else is left in the assets or
scratch directories; every new scene reaches the subscriber under one event id. Push is
at-least-once with the webhook-id (the CloudEvent id) as idempotency key (docs/push.md): exactly
the deliveries in flight at the kill arrive twice, with the same id.

`make up` restarting a dead process by itself is test_make_up.py's; here the test restarts."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

import httpx
import morecantile
import psycopg
import pytest
import rasterio

from conftest import TEMPLATE_DB, free_port
from csdr_access.admin import add_org, issue_key
from csdr_ingest.synthetic import Scene, write_scene
from infra.local.pgcluster import Cluster
from services.push.tests.receiver import Receiver
from tests.e2e.load import Load, wait_for
from tests.e2e.processes import service_process

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning"),  # thumbnails
]

COLLECTION = "e2e-kill"
SECRET = "whsec_" + "a2lsbC1raWxsLWtpbGwta2lsbC1raWxsLWtpbGwtaw=="
INGEST_LEASE_S = 60.0  # a restart on the same host must not wait for it
PUSH_LEASE_S = 2.0  # a killed push worker's in-flight deliveries are claimed again after it
SERVICES = ("catalog", "tiler", "ingest", "push")


def scene(n: int, size: int = 384) -> Scene:
    """A small synthetic scene; `n` places it and names it."""
    return Scene(f"KILL_{n}", "EPSG:32650", 662_000 + n * 2_000, 4_190_000,
                 datetime(2024, 6, n + 1), seed=40 + n, size=size)  # fmt: skip


# Big enough that its COG takes a while to write: the kill lands with the item unpublished.
SLOW = scene(9, size=2048)


@pytest.fixture
def db(pg_cluster: Cluster) -> Iterator[tuple[dict[str, str], str]]:
    """A fresh database of the session's cluster (killing a service never touches the
    cluster, so this test needs no cluster of its own): its PG* variables and conninfo."""
    name = f"kill_{uuid.uuid4().hex[:8]}"
    pg_cluster.create_database(name, template=TEMPLATE_DB)
    yield pg_cluster.env(name), pg_cluster.conninfo(name)
    with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Node:
    """The services as uvicorn processes on fixed ports, each killable and restartable."""

    def __init__(self, stack: ExitStack, env: dict[str, str], log_dir: Path) -> None:
        self.stack, self.env, self.log_dir = stack, env, log_dir
        self.ports = {name: free_port() for name in SERVICES}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.down: dict[str, list[tuple[float, float]]] = {name: [] for name in SERVICES}

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def start(self, name: str) -> None:
        factory = f"csdr_{name}.app:create_app"
        _, proc = self.stack.enter_context(
            service_process(factory, self.ports[name], self.env, self.log_dir)
        )
        self.procs[name] = proc

    def start_all(self) -> None:
        """Start every service, side by side (each takes seconds to import)."""
        with ThreadPoolExecutor(len(SERVICES)) as pool:
            list(pool.map(self.start, SERVICES))

    def kill(self, name: str) -> float:
        """SIGKILL the service; return when."""
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        at = time.monotonic()
        proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        return at

    def restart(self, name: str, killed_at: float) -> None:
        """Start the service again on its port; note the window it was down."""
        self.start(name)
        self.down[name].append((killed_at, time.monotonic()))


def files(path: Path) -> set[Path]:
    return {p for p in path.rglob("*") if p.is_file()} if path.exists() else set()


def test_each_service_killed_under_load_comes_back_with_nothing_lost_or_doubled(
    db: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    pg_env, conninfo = db
    assets, work = tmp_path / "assets", tmp_path / "work"
    env = {
        **pg_env,
        "CSDR_INGEST_ASSETS_DIR": str(assets),
        "CSDR_INGEST_WORK_DIR": str(work),
        "CSDR_INGEST_POLL_INTERVAL_S": "0.2",
        "CSDR_INGEST_LEASE_S": str(INGEST_LEASE_S),
        "CSDR_PUSH_ALLOW_PRIVATE_TARGETS": "true",
        "CSDR_PUSH_POLL_INTERVAL_S": "0.2",
        "CSDR_PUSH_LEASE_S": str(PUSH_LEASE_S),
        "CSDR_PUSH_BACKOFF_BASE_S": "0.2",
        "CSDR_PUSH_BACKOFF_MAX_S": "1",
        "CSDR_ACCESS_MAX_KEY_FAILURES": "10000",
    }
    with psycopg.connect(conninfo, autocommit=True) as conn:
        add_org(conn, "Kill", "CN", "main", "test")
        key = issue_key(conn, "Kill", ["ingest", "read"], "test")[0]
    headers = {"X-API-Key": key}
    sources = tmp_path / "sources"
    sources.mkdir()
    written = {s.name: write_scene(s, sources) for s in [*map(scene, range(5)), SLOW]}
    receiver = Receiver(free_port()).start()
    jobs: dict[str, str] = {}  # job id -> scene name

    def sql(query: str, *params: object) -> list[tuple]:
        with psycopg.connect(conninfo) as conn:
            return conn.execute(query, params).fetchall()

    with ExitStack() as stack:
        stack.callback(receiver.stop)
        node = Node(stack, env, tmp_path)
        node.start_all()

        def queue(s: Scene) -> str:
            body = {"source": str(written[s.name]), "collection": COLLECTION}
            r = httpx.post(f"{node.url('ingest')}/jobs", json=body, headers=headers)
            assert r.status_code == 202, r.text
            jobs[r.json()["id"]] = s.name
            return str(r.json()["id"])

        def status(job_id: str) -> str:
            return str(sql("SELECT status FROM csdr.ingest_jobs WHERE id = %s", job_id)[0][0])

        first = queue(scene(0))
        wait_for(lambda: status(first) == "succeeded", 60, "the first scene")
        r = httpx.post(
            f"{node.url('push')}/subscriptions",
            json={"collections": [COLLECTION], "webhook": {"url": receiver.url, "secret": SECRET}},
            headers=headers,
        )
        assert r.status_code == 201, r.text

        def announced() -> set[str]:
            """The scenes queued after the subscription: each must reach the subscriber."""
            return set(jobs.values()) - {scene(0).name}

        item = httpx.get(f"{node.url('catalog')}/collections/{COLLECTION}/items/{scene(0).name}")
        bbox = item.json()["bbox"]
        tile = morecantile.tms.get("WebMercatorQuad").tile(
            (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2, 13
        )
        search = f"{node.url('catalog')}/search?collections={COLLECTION}&limit=5"
        tile_url = (
            f"{node.url('tiler')}/collections/{COLLECTION}/items/{scene(0).name}"
            f"/presets/true-color/tiles/WebMercatorQuad/13/{tile.x}/{tile.y}.png"
        )

        with Load([search, tile_url]) as load, ThreadPoolExecutor(2) as restarts:
            # Catalog, then tiler: killed mid-request (the load never pauses); each comes back
            # while the next is killed.
            for name in ("catalog", "tiler"):
                time.sleep(0.5)
                restarts.submit(node.restart, name, node.kill(name))

            # Ingest, killed while its COG is half written with a job queued behind it, then
            # push, killed while the subscriber holds the deliveries of the scenes before.
            receiver.delay_s = 8.0
            held = [queue(scene(1)), queue(scene(2))]
            slow, behind = queue(SLOW), queue(scene(3))
            pending = assets / ".pending"
            wait_for(lambda: writing(pending, SLOW.name), 60, "the slow scene's COG to start")
            wait_for(lambda: len(webhook_ids(receiver)) == len(held), 30, "deliveries in flight")
            killed_at = {name: node.kill(name) for name in ("ingest", "push")}
            receiver.delay_s = 0.0
            assert status(slow) == "running" and status(behind) == "queued"
            assert not sql("SELECT 1 FROM pgstac.items WHERE id = %s", SLOW.name), (
                "the slow scene was published before the kill: make it bigger"
            )
            in_flight = {
                str(d) for [d] in sql("SELECT id FROM csdr.deliveries WHERE status = 'pending'")
            }
            for name, at in killed_at.items():
                restarts.submit(node.restart, name, at)
            restarts.shutdown()
            queue(scene(4))  # through the restarted ingest, to the restarted push
            last_restart = time.monotonic()
            time.sleep(1.0)

        # -- Load: no 5xx ever; a refused or cut request only to a service that was down. --
        def while_down(url: str, started: float, ended: float) -> bool:
            name = next(n for n in SERVICES if url.startswith(node.url(n)))
            return any(started <= end and ended >= start for start, end in node.down[name])

        statuses = Counter(s for *_, s in load.results)
        assert set(statuses) <= {200, -1}, statuses
        refused = [r[:3] for r in load.results if r[3] == -1]
        assert all(while_down(*r) for r in refused), refused
        assert {r[0] for r in refused} == {search, tile_url}, "not killed under load"
        after = [s for _, started, _, s in load.results if started > last_restart]
        assert after and set(after) == {200}

        # -- Jobs: each ended once, succeeded; the killed one ran twice, the rest once. --
        wait_for(lambda: all(status(j) == "succeeded" for j in jobs), 120, "the jobs to end")
        rows = sql("SELECT id::text, status, lease_until FROM csdr.ingest_jobs")
        assert {r[0] for r in rows} == set(jobs)
        assert all(r[1] == "succeeded" and r[2] is None for r in rows), rows
        attempts = sql(
            "SELECT job_id::text, attempt, outcome, ended_at IS NOT NULL,"
            " extract(epoch FROM started_at) FROM csdr.ingest_attempts ORDER BY job_id, attempt"
        )
        outcomes = {j: [a[2] for a in attempts if a[0] == j] for j in jobs}
        assert outcomes[slow] == ["lease-expired", "succeeded"], outcomes
        assert all(o == ["succeeded"] for j, o in outcomes.items() if j != slow), outcomes
        assert all(a[3] for a in attempts)
        # The restarted process took the killed one's job at once, not after its lease.
        [first_try, second_try] = [a[4] for a in attempts if a[0] == slow]
        assert float(second_try) - float(first_try) < INGEST_LEASE_S

        # -- Items: one per scene, each asset readable; no other file anywhere. --
        items = dict(
            sql(
                "SELECT id, pgstac.get_item(id, collection)->'assets' FROM pgstac.items"
                " WHERE collection = %s",
                COLLECTION,
            )
        )
        assert sorted(items) == sorted(jobs.values())
        hrefs = {Path(a["href"]) for doc in items.values() for a in doc.values()}
        for href in hrefs:
            with rasterio.open(href) as src:
                assert src.read(1, window=((0, 16), (0, 16))).shape == (16, 16)
        assert files(assets) == hrefs, files(assets) ^ hrefs
        assert files(work) == set()

        # -- Deliveries: every new scene reached the subscriber under one event id, once after
        # dedup by id; exactly the deliveries in flight at the kill arrived twice. --
        wait_for(
            lambda: (
                sql("SELECT count(*) FROM csdr.deliveries WHERE status <> 'delivered'") == [(0,)]
            ),
            60,
            "the deliveries to be recorded",
        )
        events = receiver.item_events(SECRET)
        by_item: dict[str, set[str]] = {}
        for event in events:
            assert event["type"] == "org.csdr.item.created", event["type"]
            by_item.setdefault(event["data"]["id"], set()).add(event["id"])
        assert {i: len(ids) for i, ids in by_item.items()} == dict.fromkeys(announced(), 1)
        repeated = {i for i, n in Counter(e["id"] for e in events).items() if n > 1}
        assert in_flight, "no delivery was in flight when push was killed"
        assert repeated == in_flight, (repeated, in_flight)
        [[recorded]] = sql("SELECT count(*) FROM csdr.deliveries")
        assert recorded == len(announced())

        for name in SERVICES:
            assert httpx.get(f"{node.url(name)}/readyz").status_code == 200


def writing(pending: Path, item_id: str) -> bool:
    """Whether an ingest is writing the files of `item_id` (its marker in `.pending/`)."""
    for marker in pending.glob("*.json"):
        try:
            if json.loads(marker.read_text())["item_id"] == item_id:
                return True
        except (OSError, ValueError):
            pass  # removed or being written meanwhile
    return False


def webhook_ids(receiver: Receiver) -> set[str]:
    """The distinct webhook-ids the receiver has seen (a request counts on arrival)."""
    return {str(r.headers.get("webhook-id")) for r in list(receiver.received)}
