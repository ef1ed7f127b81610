"""Soak: the node under a steady mixed load at this machine's capacity for `CSDR_BENCH_SOAK_S`
seconds (600, the issue's ten minutes): searches and item tiles from closed-loop clients that
never pause (`CSDR_BENCH_SOAK_CLIENTS`, twice the cores, half each; views and tiles drawn from
finite sets, as map clients repeat theirs, so that the services' bounded caches reach their
steady state within the warm-up and growth after it is not a cache filling), ingest jobs one after
another through POST /jobs (small synthetic scenes over a fixed set of names: the first round
creates the items, the next ones replace them, so the disk stays bounded and the tiler's item
versions change under its readers), and each new or replaced item pushed to
`SUBSCRIPTIONS` webhook subscriptions (a receiver in its own process). Catalog, tiler, ingest and
push run as uvicorn processes.

Printed: p50/p99 per kind, over the whole run after the warm-up and for its first and last
thirds (the baseline is the soak's own first third: the ratio shows whether latency drifts), and
the resident memory of every service process (and the tiler's GDAL block cache) at start, after
the warm-up (`CSDR_BENCH_SOAK_WARMUP_S`, a fifth of the run: the tiler's caches of items, open
COGs and their blocks, and responses took up to two minutes to fill here) and at the end, with a
timeline. Asserted: no 5xx, 4xx or failed connection, every job
ended succeeded, every delivery arrived exactly once, signed, and was recorded delivered, and no
process grew more than 10 % after the warm-up. The services run with the environment `make up`
gives them (PROCESS_ENV: two glibc arenas, blocks of 256 KiB and more mapped apart). The tiler's
response cache is bounded at 16 MB here (128 MB by default), GDAL's block cache at 64 MB
(256 MB) and the COGs kept open at 64 (256) so that all are full within the warm-up: the soak
checks that a full cache stays at its bound, not how long the default takes to fill (with 256
open COGs and 64 MB of blocks the tiler grew from 1,287 to 1,486 MB between 120 s and 240 s,
then stayed there)."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import httpx
import morecantile
import numpy as np
import psycopg
import pytest
from standardwebhooks import Webhook

from conftest import free_port
from csdr_access.admin import add_org, issue_key
from csdr_ingest.synthetic import Scene, write_scene
from infra.local.node import PROCESS_ENV
from tests.bench.fast_receiver import Received, Receiver, receiver_process
from tests.e2e.processes import service_process
from tests.support.items import box

DURATION_S = float(os.environ.get("CSDR_BENCH_SOAK_S", "600"))
WARMUP_S = float(os.environ.get("CSDR_BENCH_SOAK_WARMUP_S", str(DURATION_S / 5)))
CLIENTS = int(os.environ.get("CSDR_BENCH_SOAK_CLIENTS", str(2 * (os.cpu_count() or 2))))
SUBSCRIPTIONS = 10
NAMES = 24
SIZE = 384
MAX_GROWTH = 0.10
OK = {200, 202}
RSS_EVERY_S = 2.0
COLLECTION = "soak"
SECRET = "whsec_" + "c29hay1zb2FrLXNvYWstc29hay1zb2FrLXNvYWstcw=="
SERVICES = ("catalog", "tiler", "ingest", "push")
TMS = morecantile.tms.get("WebMercatorQuad")


def scene(n: int) -> Scene:
    """The n-th scene name of the soak, laid on a grid over the Yellow River delta."""
    return Scene(f"SOAK_{n:02d}", "EPSG:32650", 640_000 + (n % 6) * 3_500,
                 4_200_000 - (n // 6) * 3_500, datetime(2024, 1 + n % 12, 1 + n % 28),
                 seed=100 + n, size=SIZE)  # fmt: skip


def rss_mb(pid: int) -> float:
    """Resident memory of a process (VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise LookupError(pid)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Soak:
    """The load's threads and what they measured: (kind, start, seconds, status) per request,
    -1 for a failed connection; RSS samples per service."""

    def __init__(self, urls: dict[str, str], headers: dict[str, str], sources: Path) -> None:
        self.urls, self.headers, self.sources = urls, headers, sources
        self.results: list[tuple[str, float, float, int]] = []
        self.jobs: dict[str, str] = {}  # job id -> outcome
        self.items: dict[str, list[float]] = {}  # item id -> its bbox, once published
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.t0 = time.monotonic()

    def record(self, kind: str, call: Callable[[], httpx.Response]) -> httpx.Response | None:
        started = time.monotonic()
        try:
            r = call()
            status = r.status_code
        except httpx.TransportError:
            r, status = None, -1
        with self.lock:
            self.results.append((kind, started - self.t0, time.monotonic() - started, status))
        return r

    def searches(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=self.urls["catalog"], timeout=60) as client:
            while not self.stop.is_set():
                # Views from a finite set (map clients repeat theirs): 64 boxes x 4 months.
                west, south = 118.4 + rng.randrange(8) * 0.06, 37.6 + rng.randrange(8) * 0.045
                bbox = [west, south, west + 0.15, south + 0.1]
                month = rng.choice([1, 4, 7, 10])
                when = f"2024-{month:02d}-01T00:00:00Z/2024-12-31T23:59:59Z"
                if rng.random() < 0.5:
                    params = {
                        "collections": COLLECTION,
                        "limit": 10,
                        "bbox": ",".join(f"{v:.4f}" for v in bbox),
                        "datetime": when,
                    }
                    self.record("search GET", lambda p=params: client.get("/search", params=p))
                else:
                    body = {
                        "collections": [COLLECTION],
                        "intersects": box(bbox),
                        "limit": 10,
                        "sortby": [{"field": "datetime", "direction": "desc"}],
                    }
                    self.record("search POST", lambda b=body: client.post("/search", json=b))

    def tiles(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=self.urls["tiler"], timeout=60) as client:
            while not self.stop.is_set():
                with self.lock:
                    published = list(self.items.items())
                if not published:
                    self.stop.wait(0.2)
                    continue
                item_id, b = rng.choice(published)
                # A tile over one of 8 x 8 points of the item, at z12-z16: a finite set too.
                fx, fy = (rng.randrange(8) + 0.5) / 8, (rng.randrange(8) + 0.5) / 8
                lon, lat = b[0] + fx * (b[2] - b[0]), b[1] + fy * (b[3] - b[1])
                tile = TMS.tile(lon, lat, rng.randint(12, 16))
                path = (
                    f"/collections/{COLLECTION}/items/{item_id}/presets/true-color/tiles/"
                    f"WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
                )
                self.record("tile", lambda p=path: client.get(p))

    def ingests(self) -> None:
        """Queue a scene, wait for its job to end, queue the next; the names cycle."""
        with httpx.Client(base_url=self.urls["ingest"], headers=self.headers, timeout=60) as c:
            n = 1
            while not self.stop.is_set():
                self.ingest(c, scene(n % NAMES))
                n += 1

    def ingest(self, client: httpx.Client, s: Scene) -> None:
        """Queue `s` through POST /jobs and wait (at most two minutes) for the job to end."""
        body = {"source": str(write_scene(s, self.sources)), "collection": COLLECTION}
        started = time.monotonic()
        r = self.record("job POST", lambda: client.post("/jobs", json=body))
        if r is None or r.status_code != 202:
            return
        job_id = r.json()["id"]
        self.jobs[job_id] = "queued"
        while time.monotonic() < started + 120:
            job = self.record("job GET", lambda: client.get(f"/jobs/{job_id}"))
            if job is not None and job.json().get("status") in ("succeeded", "failed"):
                self.jobs[job_id] = job.json()["status"]
                break
            time.sleep(0.05)
        with self.lock:
            self.results.append(("ingest job", started - self.t0, time.monotonic() - started, 200))
        if self.jobs[job_id] == "succeeded" and s.name not in self.items:
            url = f"{self.urls['catalog']}/collections/{COLLECTION}/items/{s.name}"
            item = self.record("item GET", lambda: httpx.get(url, timeout=60))
            if item is not None and item.status_code == 200:
                with self.lock:
                    self.items[s.name] = item.json()["bbox"]


# The tiler's caches shown over the run: (label, gauge in its /metrics, divisor).
TILER_GAUGES = (
    ("gdal cache MB", "csdr_tiler_gdal_block_cache_bytes", 2**20),
    ("open COGs", "csdr_tiler_open_datasets", 1),
)


def tiler_gauges(tiler: str) -> dict[str, float]:
    """The TILER_GAUGES read from the tiler's /metrics; -1 when unreadable."""
    found = dict.fromkeys((label for label, _, _ in TILER_GAUGES), -1.0)
    try:
        text = httpx.get(f"{tiler}/metrics", timeout=10).text
    except httpx.HTTPError:
        return found
    for line in text.splitlines():
        for label, gauge, divisor in TILER_GAUGES:
            if line.startswith(f"{gauge} "):
                found[label] = float(line.split()[1]) / divisor
    return found


def sample_memory(
    pids: dict[str, int],
    tiler: str,
    stop: threading.Event,
    samples: list[tuple[float, dict[str, float]]],
) -> None:
    """RSS of each service and the tiler's cache gauges, every RSS_EVERY_S."""
    t0 = time.monotonic()
    while not stop.wait(RSS_EVERY_S):
        sample = {n: rss_mb(p) for n, p in pids.items()}
        samples.append((time.monotonic() - t0, {**sample, **tiler_gauges(tiler)}))


def signed_on_arrival(r: Received) -> bool:
    """Whether a delivery's Standard Webhooks signature verifies, and its timestamp was within
    the standard's five minutes when it arrived (`Webhook.verify` judges it against now: the
    first deliveries of a ten-minute soak would be refused after it)."""
    stamp = datetime.fromtimestamp(int(r.headers["webhook-timestamp"]), UTC)
    expected = Webhook(SECRET).sign(r.headers["webhook-id"], stamp, r.body.decode())
    event = json.loads(r.body)
    return (
        abs(r.at - stamp.timestamp()) <= 300
        and expected in r.headers["webhook-signature"].split(" ")
        and event["id"] == r.headers["webhook-id"]
    )


def percentiles(seconds: list[float]) -> tuple[float, float]:
    if not seconds:
        return float("nan"), float("nan")
    p50, p99 = np.percentile(np.array(seconds) * 1000, [50, 99])
    return float(p50), float(p99)


@pytest.mark.skipif(DURATION_S <= 0, reason="CSDR_BENCH_SOAK_S is 0")
def test_soak(database: dict[str, str], pg_cluster, tmp_path: Path) -> None:
    env = {
        **PROCESS_ENV,
        **database,
        "CSDR_INGEST_ASSETS_DIR": str(tmp_path / "assets"),
        "CSDR_INGEST_WORK_DIR": str(tmp_path / "work"),
        "CSDR_INGEST_POLL_INTERVAL_S": "0.2",
        "CSDR_PUSH_ALLOW_PRIVATE_TARGETS": "true",
        "CSDR_TILER_RESPONSE_CACHE_MAX_BYTES": str(16 * 1024 * 1024),
        "CSDR_TILER_GDAL_CACHE_MB": "64",
        "CSDR_TILER_OPEN_DATASETS": "64",
        "CSDR_ACCESS_MAX_KEY_FAILURES": "10000",
    }
    conninfo = pg_cluster.conninfo(database["PGDATABASE"])
    with psycopg.connect(conninfo, autocommit=True) as conn:
        add_org(conn, "Soak", "CN", "main", "test")
        key = issue_key(conn, "Soak", ["ingest", "read"], "test")[0]
    headers = {"X-API-Key": key}
    sources = tmp_path / "sources"
    sources.mkdir()

    with ExitStack() as stack:
        ports = {name: free_port() for name in SERVICES}
        with ThreadPoolExecutor(len(SERVICES)) as pool:
            started = dict(
                zip(
                    SERVICES,
                    pool.map(
                        lambda n: stack.enter_context(
                            service_process(
                                f"csdr_{n}.app:create_app", ports[n], env, tmp_path, timeout_s=180
                            )
                        ),
                        SERVICES,
                    ),
                    strict=True,
                )
            )
        urls = {name: url for name, (url, _) in started.items()}
        pids = {name: proc.pid for name, (_, proc) in started.items()}
        receiver: Receiver = stack.enter_context(receiver_process(free_port()))
        soak = Soak(urls, headers, sources)

        # The collection exists once the first scene is in; then the subscriptions.
        with httpx.Client(base_url=urls["ingest"], headers=headers, timeout=60) as client:
            soak.ingest(client, scene(0))
        webhook = {"url": receiver.url, "secret": SECRET}
        for _ in range(SUBSCRIPTIONS):
            r = httpx.post(
                f"{urls['push']}/subscriptions",
                json={"collections": [COLLECTION], "webhook": webhook},
                headers=headers,
            )
            assert r.status_code == 201, r.text
        with psycopg.connect(conninfo) as conn:
            [[first_event]] = conn.execute("SELECT coalesce(max(id), 0) FROM csdr.item_events")

        memory: list[tuple[float, dict[str, float]]] = []
        at_start = {n: rss_mb(p) for n, p in pids.items()}
        memory_stop = threading.Event()
        threads = [
            threading.Thread(target=sample_memory, args=(pids, urls["tiler"], memory_stop, memory))
        ]
        threads += [threading.Thread(target=soak.ingests)]
        threads += [
            threading.Thread(target=soak.searches if i % 2 else soak.tiles, args=(i,))
            for i in range(CLIENTS)
        ]
        soak.t0 = time.monotonic()
        for thread in threads:
            thread.start()
        soak.stop.wait(DURATION_S)
        soak.stop.set()
        for thread in threads[1:]:
            thread.join(180)
        memory_stop.set()
        threads[0].join()
        wall_s = time.monotonic() - soak.t0
        alive = {n: proc.poll() is None for n, (_, proc) in started.items()}

        # Lost work: every job ended; every delivery recorded delivered and received once.
        deadline = time.monotonic() + 120
        with psycopg.connect(conninfo, autocommit=True) as conn:
            while True:
                [[open_jobs, open_deliveries]] = conn.execute(
                    "SELECT (SELECT count(*) FROM csdr.ingest_jobs"
                    "        WHERE status IN ('queued', 'running')),"
                    " (SELECT count(*) FROM csdr.deliveries WHERE status <> 'delivered')"
                ).fetchall()
                [[unprocessed]] = conn.execute(
                    "SELECT count(*) FROM csdr.item_events WHERE processed_at IS NULL"
                ).fetchall()
                if open_jobs == open_deliveries == unprocessed == 0:
                    break
                assert time.monotonic() < deadline, (open_jobs, open_deliveries, unprocessed)
                time.sleep(0.2)
            jobs = dict(conn.execute("SELECT id::text, status FROM csdr.ingest_jobs").fetchall())
            deliveries = dict(
                conn.execute(
                    "SELECT d.id::text, extract(epoch FROM e.created_at)::float8"
                    " FROM csdr.deliveries d JOIN csdr.item_events e ON e.id = d.event_id"
                ).fetchall()
            )
            [[events]] = conn.execute(
                "SELECT count(*) FROM csdr.item_events WHERE id > %s", (first_event,)
            ).fetchall()
        time.sleep(0.5)  # a late duplicate would show
        received = receiver.received()

    # -- What the soak measured. --
    kinds = sorted({kind for kind, *_ in soak.results})
    statuses = Counter(status for *_, status in soak.results)
    measured = [r for r in soak.results if r[1] >= WARMUP_S]
    third = (wall_s - WARMUP_S) / 3
    first_third = [r for r in measured if r[1] < WARMUP_S + third]
    last_third = [r for r in measured if r[1] >= wall_s - third]
    arrivals = [r.at - deliveries[r.headers["webhook-id"]] for r in received]
    print(
        f"\nSoak: {wall_s:.0f} s ({WARMUP_S:.0f} s warm-up), {CLIENTS} clients (searches and"
        f" tiles), one ingest at a time ({SIZE} px scenes over {NAMES} names), "
        f"{SUBSCRIPTIONS} subscriptions; load average {load_average()}"
    )
    print(f"{'kind':<13}{'count':>7}{'per s':>7}{'p50 ms':>8}{'p99 ms':>8}"
          f"{'p99 first':>11}{'p99 last':>10}{'last/first':>11}  not 2xx")  # fmt: skip
    for kind in kinds:
        every = [r[2] for r in measured if r[0] == kind]
        p50, p99 = percentiles(every)
        first_p99 = percentiles([r[2] for r in first_third if r[0] == kind])[1]
        last_p99 = percentiles([r[2] for r in last_third if r[0] == kind])[1]
        print(
            f"{kind:<13}{len(every):>7}{len(every) / max(wall_s - WARMUP_S, 1e-9):>7.1f}"
            f"{p50:>8.0f}{p99:>8.0f}{first_p99:>11.0f}{last_p99:>10.0f}"
            f"{last_p99 / first_p99:>10.2f}x"
            f"  {dict(Counter(r[3] for r in soak.results if r[0] == kind and r[3] not in OK))}"
        )
    p50, p99 = percentiles(arrivals)
    print(f"{'delivery':<13}{len(arrivals):>7}{len(arrivals) / wall_s:>7.1f}{p50:>8.0f}{p99:>8.0f}"
          "   (from the item's transaction to the receiver)")  # fmt: skip
    after_warmup = [m for t, m in memory if t >= WARMUP_S]
    assert after_warmup, "the soak ended before its warm-up"
    baseline = {n: float(np.median([m[n] for m in after_warmup[:3]])) for n in SERVICES}
    at_end = {n: float(np.median([m[n] for m in after_warmup[-3:]])) for n in SERVICES}
    peak = {n: max(m[n] for _, m in memory) for n in SERVICES}
    print(f"{'RSS MB':<10}{'start':>8}{'warm':>8}{'end':>8}{'peak':>8}{'end/warm':>10}")
    for n in SERVICES:
        print(
            f"{n:<10}{at_start[n]:>8.0f}{baseline[n]:>8.0f}{at_end[n]:>8.0f}{peak[n]:>8.0f}"
            f"{at_end[n] / baseline[n]:>9.2f}x"
        )
    marks = [memory[round(i * (len(memory) - 1) / 10)] for i in range(11)]
    print("RSS MB over the run, " + " ".join(f"{t:>5.0f}s" for t, _ in marks))
    for n in (*SERVICES, *(label for label, _, _ in TILER_GAUGES)):
        print(f"{n:<21}" + " ".join(f"{m[n]:>6.0f}" for _, m in marks))
    print(f"statuses {dict(statuses)}; jobs {Counter(jobs.values())}; item events {events},"
          f" deliveries {len(deliveries)}, received {len(received)}")  # fmt: skip

    # -- What must hold: every criterion judged, all failures named together. --
    ids = [r.headers["webhook-id"] for r in received]
    unsigned = [r.headers["webhook-id"] for r in received if not signed_on_arrival(r)]
    grown = {n: round(at_end[n] / baseline[n] - 1, 3) for n in SERVICES}
    errors = {kind: Counter(r[3] for r in soak.results if r[0] == kind and r[3] not in OK)
              for kind in kinds}  # fmt: skip
    failed = [
        what
        for what, holds in (
            (f"processes died: {alive}", all(alive.values())),
            (f"answers not 2xx (-1: no connection): {errors}", set(statuses) <= OK),
            (f"jobs not succeeded: {Counter(jobs.values())}", set(jobs.values()) == {"succeeded"}),
            ("a queued job was not recorded", set(soak.jobs) <= set(jobs)),
            (f"deliveries not signed as received: {unsigned[:5]}", not unsigned),
            (
                f"deliveries: {len(ids)} received ({len(set(ids))} distinct) of"
                f" {len(deliveries)} recorded, {events} events x {SUBSCRIPTIONS} subscriptions",
                len(ids) == len(set(ids)) == len(deliveries) == events * SUBSCRIPTIONS
                and set(ids) == set(deliveries),
            ),
            (f"memory grew more than {MAX_GROWTH:.0%}: {grown}", max(grown.values()) <= MAX_GROWTH),
        )
        if not holds
    ]
    assert not failed, "\n".join(failed)
