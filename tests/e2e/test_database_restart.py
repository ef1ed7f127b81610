"""PostgreSQL restarted (fast shutdown, a pause, start) while searches, tiles, ingest jobs and
push deliveries run, on a cluster of this test's own. During the outage every service's
`/readyz` answers 503 and requests fail fast with 503 and Retry-After (never a 500, never a
hang); afterwards every service answers again without being restarted, every queued job ends
once, and every new scene reaches the subscriber once."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

import httpx
import morecantile
import psycopg
import pytest

from conftest import free_port
from csdr_access.admin import add_org, issue_key
from csdr_ingest.synthetic import Scene, write_scene
from infra.db.migrate import migrate
from infra.local.pgcluster import Cluster
from services.push.tests.receiver import Receiver
from tests.e2e.load import Load, wait_for
from tests.e2e.processes import service_process

pytestmark = pytest.mark.slow

COLLECTION = "e2e-restart"
SECRET = "whsec_" + "cmVzdGFydC1yZXN0YXJ0LXJlc3RhcnQtcmVzdGFydA=="
OUTAGE_S = 4.0
FAIL_FAST_S = 10.0  # a request during the outage answers within this
SCENES = [
    Scene(f"RESTART_{n}", "EPSG:32650", 662_000 + n * 3_000, 4_190_000, datetime(2024, 5, n + 1),
          seed=20 + n, size=384)
    for n in range(4)
]  # fmt: skip


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A cluster of this test's own (restarting the session's would disturb other tests)."""
    base = Path(tempfile.mkdtemp(prefix="csdr-restart-"))
    base.chmod(0o755)
    own = Cluster(base / "pg", free_port(), base / "logs" / "pg.log", base / "run", throwaway=True)
    try:
        own.start()
        own.create_database("csdr")
        migrate(own.conninfo("csdr"))
        yield own
    finally:
        own.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_a_database_restart_under_load(cluster: Cluster, tmp_path: Path) -> None:
    env = {
        **cluster.env("csdr"),
        "CSDR_INGEST_ASSETS_DIR": str(tmp_path / "assets"),
        "CSDR_INGEST_POLL_INTERVAL_S": "0.2",
        "CSDR_INGEST_LEASE_S": "3",
        "CSDR_PUSH_ALLOW_PRIVATE_TARGETS": "true",
        "CSDR_PUSH_POLL_INTERVAL_S": "0.2",
        "CSDR_PUSH_BACKOFF_BASE_S": "0.2",
        "CSDR_PUSH_BACKOFF_MAX_S": "1",
        "CSDR_ACCESS_MAX_KEY_FAILURES": "10000",
    }
    with psycopg.connect(cluster.conninfo("csdr"), autocommit=True) as conn:
        add_org(conn, "Restart", "CN", "main", "test")
        key = issue_key(conn, "Restart", ["ingest", "read"], "test")[0]
    headers = {"X-API-Key": key}
    receiver = Receiver(free_port()).start()
    services = ("catalog", "tiler", "ingest", "push")
    with ExitStack() as stack:
        stack.callback(receiver.stop)
        started = {
            name: stack.enter_context(
                service_process(f"csdr_{name}.app:create_app", free_port(), env, tmp_path)
            )
            for name in services
        }
        urls = {name: url for name, (url, _) in started.items()}
        pids = {name: proc.pid for name, (_, proc) in started.items()}

        def queue(scene: Scene) -> str:
            body = {"source": str(write_scene(scene, tmp_path)), "collection": COLLECTION}
            r = httpx.post(f"{urls['ingest']}/jobs", json=body, headers=headers)
            assert r.status_code == 202, r.text
            return str(r.json()["id"])

        def job(job_id: str) -> dict:
            return httpx.get(f"{urls['ingest']}/jobs/{job_id}", headers=headers).json()

        first = queue(SCENES[0])
        wait_for(lambda: job(first)["status"] == "succeeded", 120, "the first scene")
        r = httpx.post(
            f"{urls['push']}/subscriptions",
            json={"collections": [COLLECTION], "webhook": {"url": receiver.url, "secret": SECRET}},
            headers=headers,
        )
        assert r.status_code == 201, r.text
        item = httpx.get(f"{urls['catalog']}/collections/{COLLECTION}/items/{SCENES[0].name}")
        b = item.json()["bbox"]
        lon, lat = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        tile = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, 13)
        load_urls = [
            f"{urls['catalog']}/search?collections={COLLECTION}&limit=5",
            f"{urls['tiler']}/collections/{COLLECTION}/items/{SCENES[0].name}/presets/true-color/"
            f"tiles/WebMercatorQuad/13/{tile.x}/{tile.y}.png",
        ]

        with Load(load_urls, timeout_s=FAIL_FAST_S * 3) as load:
            jobs = [queue(scene) for scene in SCENES[1:]]
            time.sleep(0.5)
            cluster.stop()
            down_at = time.monotonic()
            during = {}
            with httpx.Client(timeout=FAIL_FAST_S * 3) as client:
                for name, url in urls.items():
                    r = client.get(f"{url}/readyz")
                    during[name] = r.status_code
                t0 = time.monotonic()
                search = client.get(load_urls[0])
                search_s = time.monotonic() - t0
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
            cluster.start()
            up_at = time.monotonic()
            for url in urls.values():
                wait_for(lambda u=url: httpx.get(f"{u}/readyz").status_code == 200, 60, url)
            ready_at = time.monotonic()
            time.sleep(3.0)

        assert during == dict.fromkeys(services, 503), during
        assert search.status_code == 503 and search.headers.get("retry-after"), search.text
        assert search.json()["code"] and search_s < FAIL_FAST_S
        # Under load: nothing but 200s and fast 503s; 503s only around the outage.
        statuses = {status for *_, status in load.results}
        assert statuses <= {200, 503}, sorted(statuses)
        assert max(end - start for _, start, end, _ in load.results) < FAIL_FAST_S * 2
        # Answered while the database was down (a request that started before the stop may have
        # waited for its connection into the outage, so overlap rather than start time).
        outage = [s for _, start, end, s in load.results if start <= up_at and end >= down_at]
        assert 503 in outage, sorted(load.results, key=lambda r: r[1])[-20:]
        after = [s for _, at, _, s in load.results if at > ready_at + 0.5]
        assert after and set(after) == {200}, after

        # Every job ends once; every scene is searchable; the services were never restarted.
        ended = [wait_for(lambda j=j: job(j)["status"] in ("succeeded", "failed"), 120, j)
                 for j in jobs]  # fmt: skip
        outcomes = {j: job(j)["status"] for j in jobs}
        assert all(ended) and set(outcomes.values()) == {"succeeded"}, outcomes
        found = httpx.get(
            f"{urls['catalog']}/search", params={"collections": COLLECTION, "limit": 10}
        ).json()
        assert sorted(f["id"] for f in found["features"]) == sorted(s.name for s in SCENES)
        assert all(proc.poll() is None and proc.pid == pids[name]
                   for name, (_, proc) in started.items())  # fmt: skip

        # Every scene created after the subscription reached the subscriber, exactly once.
        def delivered() -> dict[str, set[str]]:
            ids: dict[str, set[str]] = {}
            for event in receiver.events(SECRET):
                if event["type"] == "org.csdr.item.created":
                    ids.setdefault(event["data"]["id"], set()).add(event["id"])
            return ids

        wait_for(lambda: len(delivered()) == len(SCENES) - 1, 60, "the deliveries")
        assert {i: len(w) for i, w in delivered().items()} == {s.name: 1 for s in SCENES[1:]}
