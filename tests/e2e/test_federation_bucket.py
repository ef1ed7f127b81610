"""A partner node whose assets live in object storage (moto's S3 server on 127.0.0.1) mirrors the
main node with `--assets copy`, its federation worker running in two processes: the copies land
in the node's bucket (nothing on local disk), GDAL reads them through `/vsis3/`, a delete at
main removes them from the bucket. A copy longer than the lease runs on one process only (its
lease is renewed), and the copy of a process SIGKILLed mid-file is taken over by the other once
the lease has ended, resumed with a byte range."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
import rasterio
from psycopg.types.json import Jsonb
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from conftest import TEMPLATE_DB, free_port
from csdr_access.admin import add_org, issue_key
from csdr_catalog.downloads import download_url
from csdr_federation.assets import copy_key, copy_version
from csdr_ingest.pipeline import ingest_file
from csdr_ingest.settings import Settings as IngestSettings
from csdr_ingest.synthetic import write_scene
from csdr_storage.store import gdal_options
from infra.local.pgcluster import Cluster
from services.federation.tests.conftest import stac_collection, stac_item
from tests.e2e.conftest import ASSETS_BUCKET
from tests.e2e.inbox import wait_for
from tests.e2e.processes import service, service_process
from tests.e2e.test_federation import VIENTIANE, csdr_admin
from tests.support.s3 import S3Server
from tests.support.servers import served

pytestmark = pytest.mark.slow

PREFIX = "la-node"
LEASE_S = 2.0
SLOW_KEY = "key-of-the-slow-origin"
PAYLOAD = os.urandom(3 * 1024 * 1024 + 17)
HALF = 2 * 1024 * 1024 + 5  # sent before the origin pauses: two whole chunks reach the file


@dataclass
class Fetch:
    """One request the slow origin answered."""

    item: str
    range: str | None
    client_port: int
    started: float
    ended: float | None = None


@dataclass
class SlowOrigin:
    """A peer's download route that sends HALF of PAYLOAD, then pauses (for `pause_s`, or until
    `release` is set) before the rest (a ranged request, the rest at once); every request
    recorded, and the most at once."""

    url: str = ""
    pause_s: float = 0.0
    release: threading.Event = field(default_factory=threading.Event)
    fetches: list[Fetch] = field(default_factory=list)
    active: int = 0
    most_active: int = 0
    half_sent: threading.Event = field(default_factory=threading.Event)

    def app(self) -> Starlette:
        async def body(fetch: Fetch, start: int) -> AsyncIterator[bytes]:
            try:
                if start == 0:
                    yield PAYLOAD[:HALF]
                    self.half_sent.set()
                    deadline = time.monotonic() + (self.pause_s or 30.0)
                    while time.monotonic() < deadline and not self.release.is_set():
                        await asyncio.sleep(0.05)
                yield PAYLOAD[HALF if start == 0 else start :]
            finally:
                fetch.ended = time.time()
                self.active -= 1

        async def download(request: Request) -> Response:
            if request.headers.get("x-api-key") != SLOW_KEY:
                return JSONResponse({"code": "Unauthorized"}, status_code=401)
            asked = request.headers.get("range")
            start = int(asked.split("=")[1].split("-")[0]) if asked else 0
            assert request.client is not None
            fetch = Fetch(request.path_params["i"], asked, request.client.port, time.time())
            self.fetches.append(fetch)
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            headers = {"content-length": str(len(PAYLOAD) - start)}
            if asked:
                end = len(PAYLOAD) - 1
                headers["content-range"] = f"bytes {start}-{end}/{len(PAYLOAD)}"
            return StreamingResponse(
                body(fetch, start), 206 if asked else 200, headers, "image/tiff"
            )

        return Starlette(routes=[Route("/collections/{c}/items/{i}/assets/{a}", download)])


@dataclass
class Partner:
    """The partner node: its database, environment and its two federation processes."""

    cluster: Cluster
    db: str
    env: dict[str, str]
    main_db: str
    main_env: dict[str, str]
    base: Path
    workers: dict[int, Any]
    origin: SlowOrigin

    def connect(self, db: str | None = None) -> psycopg.Connection:
        return psycopg.connect(self.cluster.conninfo(db or self.db), autocommit=True)

    def copies(self, item_id: str) -> list[tuple[str, str, int, str]]:
        with self.connect() as conn:
            return conn.execute(
                "SELECT asset, status, attempts, path FROM csdr.federation_assets"
                " WHERE item_id = %s ORDER BY asset",
                (item_id,),
            ).fetchall()

    def item(self, item_id: str, collection: str) -> dict[str, Any] | None:
        with self.connect() as conn:
            row = conn.execute("SELECT pgstac.get_item(%s, %s)", (item_id, collection)).fetchone()
        return row[0] if row else None


@pytest.fixture(scope="module")
def partner(
    pg_cluster: Cluster, s3: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Partner]:
    main_db, partner_db = (f"fedb_{n}_{uuid.uuid4().hex[:8]}" for n in ("main", "la"))
    for name in (main_db, partner_db):
        pg_cluster.create_database(name, template=TEMPLATE_DB)
    base = tmp_path_factory.mktemp("federation-bucket")
    with psycopg.connect(pg_cluster.conninfo(main_db), autocommit=True) as main:
        main.execute("SELECT pgstac.create_collection(%s)", (Jsonb(stac_collection("gf1")),))
        add_org(main, "LASAC", "LA", "partner", "test")
        key = issue_key(main, "LASAC", ["read"], "test")[0]
    main_feed_port, main_catalog_port = free_port(), free_port()
    main_env = {
        **pg_cluster.env(main_db),
        "CSDR_INGEST_ASSETS_DIR": str(base / "main-assets"),
        "CSDR_FEDERATION_NODE_NAME": "main",
        "CSDR_FEDERATION_CATALOG_URL": f"http://127.0.0.1:{main_catalog_port}",
    }
    env = {
        **pg_cluster.env(partner_db),
        **s3.env,
        "CSDR_INGEST_ASSETS_URL": f"s3://{ASSETS_BUCKET}/{PREFIX}",
        "CSDR_INGEST_ASSETS_DIR": str(base / "la-assets"),  # must stay empty
        "CSDR_FEDERATION_NODE_NAME": "la",
        "CSDR_FEDERATION_POLL_INTERVAL_S": "0.3",
        "CSDR_FEDERATION_BACKOFF_MAX_S": "1",
        "CSDR_FEDERATION_ASSET_LEASE_S": str(LEASE_S),
        "TMPDIR": str(base / "tmp"),  # where copies are staged before their upload
    }
    (base / "tmp").mkdir()
    csdr_admin(
        pg_cluster.env(partner_db), "peer", "add", "main", f"http://127.0.0.1:{main_feed_port}",
        "--key", key, "--collections", "gf1", "--assets", "copy",
    )  # fmt: skip
    origin = SlowOrigin()
    with ExitStack() as stack:
        origin.url = stack.enter_context(served(origin.app(), "/healthz"))
        with psycopg.connect(pg_cluster.conninfo(partner_db), autocommit=True) as conn:
            # Copies of this peer's assets are queued by hand below: paused, it is never synced.
            conn.execute(
                "INSERT INTO csdr.federation_peers (name, url, api_key, assets, status)"
                " VALUES ('slow', %s, %s, 'copy', 'paused')",
                (origin.url, SLOW_KEY),
            )
            conn.execute("SELECT pgstac.create_collection(%s)", (Jsonb(stac_collection("slow")),))
        stack.enter_context(
            service("csdr_catalog.app:create_app", main_catalog_port, main_env, base)
        )
        stack.enter_context(
            service("csdr_federation.app:create_app", main_feed_port, main_env, base)
        )
        workers = {}
        for _ in range(2):
            url, proc = stack.enter_context(
                service_process("csdr_federation.app:create_app", free_port(), env, base)
            )
            workers[proc.pid] = proc
        yield Partner(pg_cluster, partner_db, env, main_db, main_env, base, workers, origin)
        origin.release.set()
    with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        for name in (main_db, partner_db):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def queue_slow_copy(partner: Partner, item_id: str) -> str:
    """A mirrored item of the slow peer whose asset's copy is queued, as a page would queue it;
    the href its copy gets in the bucket."""
    item = stac_item(item_id, collection="slow")
    item["assets"]["data"] |= {
        "href": download_url(partner.origin.url + "/", "slow", item_id, "data"),
        "file:size": len(PAYLOAD),
        "file:checksum": "1220" + hashlib.sha256(PAYLOAD).hexdigest(),
        "type": "image/tiff",
    }
    item["properties"]["csdr:origin"] = "slow"
    asset = item["assets"]["data"]
    version = copy_version(asset["href"], asset["file:checksum"])
    key = copy_key("slow", "slow", item_id, "data", "image/tiff", version)
    target = f"s3://{ASSETS_BUCKET}/{PREFIX}/{key}"
    with partner.connect() as conn:
        conn.execute("SELECT pgstac.upsert_item(%s)", (Jsonb(item),))
        conn.execute(
            "INSERT INTO csdr.federation_assets"
            " (collection, item_id, asset, peer, source, size, checksum, path)"
            " VALUES ('slow', %s, 'data', 'slow', %s, %s, %s, %s)",
            (item_id, item["assets"]["data"]["href"], len(PAYLOAD),
             item["assets"]["data"]["file:checksum"], target),
        )  # fmt: skip
    return target


def object_bytes(s3: S3Server, href: str) -> bytes:
    key = href.removeprefix(f"s3://{ASSETS_BUCKET}/")
    return bytes(s3.client().get_object(Bucket=ASSETS_BUCKET, Key=key)["Body"].read())


def pid_of_client(port: int, pids: list[int]) -> int:
    """The process (of `pids`) holding the local TCP port `port` on 127.0.0.1 (/proc/net/tcp:
    the socket's inode, then the process with a descriptor on it)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port:
            inodes.add(f"socket:[{fields[9]}]")
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) in inodes:
                    return pid
            except OSError:
                continue
    raise LookupError(f"no process of {pids} holds port {port}")


def test_copies_go_to_the_bucket_and_leave_it_with_their_item(partner, s3, tmp_path, monkeypatch):
    scene = write_scene(VIENTIANE, tmp_path)
    with partner.connect(partner.main_db) as main:
        settings = IngestSettings(assets_dir=partner.base / "main-assets")
        item = ingest_file(scene, main, settings, collection="gf1")

    def copied() -> bool:
        rows = partner.copies(item["id"])
        return bool(rows) and all(r[1] == "copied" for r in rows)

    wait_for(copied, 90, "the scene's assets copied to the partner's bucket")
    mirrored = partner.item(item["id"], "gf1")
    assert mirrored is not None
    folder = f"s3://{ASSETS_BUCKET}/{PREFIX}/mirrors/main/gf1/{item['id']}/"
    rows = partner.copies(item["id"])
    assert "data" in [r[0] for r in rows]
    for key, _, attempts, path in rows:
        href = mirrored["assets"][key]["href"]
        assert href == path and href.startswith(folder) and attempts == 1, (key, href)
        assert object_bytes(s3, href) == Path(item["assets"][key]["href"]).read_bytes(), key
    assert not (partner.base / "la-assets").exists(), "a copy was written to local disk"
    assert not [p for p in (partner.base / "tmp").rglob("*") if p.is_file()], "staged files left"

    # GDAL reads the copy from the bucket (`/vsis3/`, as the partner's tiler does): main's pixels.
    for name, value in s3.env.items():  # GDAL takes the credentials from the environment
        monkeypatch.setenv(name, value)
    with (
        rasterio.Env(**gdal_options(s3.env)),
        rasterio.open(mirrored["assets"]["data"]["href"]) as copy,
        rasterio.open(item["assets"]["data"]["href"]) as original,
    ):
        assert copy.profile == original.profile
        assert np.array_equal(copy.read(), original.read())

    # Deleted at main: the mirror forgets the item, and its copies leave the bucket.
    with partner.connect(partner.main_db) as main:
        main.execute("DELETE FROM pgstac.items WHERE collection = 'gf1' AND id = %s", (item["id"],))
    prefix = folder.removeprefix(f"s3://{ASSETS_BUCKET}/")
    wait_for(lambda: s3.keys(ASSETS_BUCKET, prefix) == [], 60, "the copies removed from the bucket")
    assert partner.item(item["id"], "gf1") is None and partner.copies(item["id"]) == []


def test_a_copy_longer_than_its_lease_runs_on_one_process_only(partner, s3):
    assert all(proc.poll() is None for proc in partner.workers.values()), "runs before the kill"
    origin = partner.origin
    origin.pause_s = 3 * LEASE_S  # the copy takes several leases
    fetched = len(origin.fetches)
    target = queue_slow_copy(partner, "LONG")
    wait_for(lambda: partner.copies("LONG")[0][1] == "copied", 60, "the long copy to end")
    [(_, status, attempts, path)] = partner.copies("LONG")
    fetches = origin.fetches[fetched:]
    # Both processes looked for work all along; the one copying kept its lease.
    assert (status, attempts, path) == ("copied", 1, target)
    assert [f.range for f in fetches] == [None] and origin.most_active == 1
    assert fetches[0].ended is not None
    assert fetches[0].ended - fetches[0].started >= 3 * LEASE_S - 0.1
    assert object_bytes(s3, target) == PAYLOAD
    item = partner.item("LONG", "slow")
    assert item is not None and item["assets"]["data"]["href"] == target


def test_a_killed_processs_copy_is_taken_over_after_its_lease(partner, s3):
    origin = partner.origin
    origin.pause_s = 0.0  # paused until released
    origin.half_sent.clear()
    fetched = len(origin.fetches)
    target = queue_slow_copy(partner, "KILLED")
    assert origin.half_sent.wait(60), "no process started the copy"
    first = origin.fetches[fetched]
    alive = [pid for pid, proc in partner.workers.items() if proc.poll() is None]
    assert len(alive) == 2
    victim = pid_of_client(first.client_port, alive)
    time.sleep(LEASE_S)  # a heartbeat or two: the lease is renewed, nobody else copies
    assert len(origin.fetches) == fetched + 1
    os.kill(victim, signal.SIGKILL)
    partner.workers[victim].wait()
    killed_at = time.time()

    wait_for(lambda: partner.copies("KILLED")[0][1] == "copied", 60, "the copy taken over")
    [(_, status, attempts, path)] = partner.copies("KILLED")
    assert (status, attempts, path) == ("copied", 2, target)
    first, second = origin.fetches[fetched:]
    # Resumed from what the killed process had written, only once its lease had ended.
    assert first.range is None and second.range is not None
    assert int(second.range.split("=")[1].rstrip("-")) >= 1024 * 1024
    assert first.ended is not None and second.started >= first.ended
    assert second.started >= killed_at + LEASE_S - LEASE_S / 3 - 0.2
    survivor = next(pid for pid in alive if pid != victim)
    assert survivor in partner.workers and partner.workers[survivor].poll() is None
    assert object_bytes(s3, target) == PAYLOAD
    item = partner.item("KILLED", "slow")
    assert item is not None and item["assets"]["data"]["href"] == target
