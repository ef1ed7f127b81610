"""The queue's leases on a real database: an expired lease queues its job again, a worker that
lost its lease cannot record an outcome, a job whose workers keep dying fails, and a starting
worker ends the leases of its host's dead processes at once."""

import os
import socket
import subprocess
import sys
import time
from dataclasses import replace

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from csdr_ingest import jobs
from csdr_ingest.claims import LeaseLost, publishing_for, record
from csdr_ingest.settings import Settings
from csdr_ingest.synthetic import DEMO_SCENES, write_scene

LEASE_S = 0.2


@pytest.fixture
def pool(pg_env):
    with ConnectionPool(min_size=1, max_size=2, kwargs={"autocommit": True}) as p:
        yield p


def attempts(pool, job_id):
    with pool.connection() as conn:
        return conn.execute(
            "SELECT attempt, worker, outcome, started_at, ended_at FROM csdr.ingest_attempts"
            " WHERE job_id = %s ORDER BY attempt",
            (job_id,),
        ).fetchall()


def test_a_lost_lease_queues_the_job_again_and_fences_the_old_worker(pool):
    queued = jobs.enqueue(pool, "/nowhere.tif", "c", None)
    first = jobs.claim(pool, "host-a:1", LEASE_S)
    assert first["id"] == queued["id"] and first["attempt"] == 1
    assert jobs.claim(pool, "host-b:2", LEASE_S) is None  # leased: nobody else gets it
    assert jobs.renew(pool, "host-a:1", {first["id"]: 1}, LEASE_S) == {first["id"]}
    assert jobs.reap(pool, max_attempts=3) == []  # renewed: still host-a's
    time.sleep(LEASE_S + 0.1)
    assert jobs.reap(pool, max_attempts=3) == []  # expired, queued again (not failed)
    second = jobs.claim(pool, "host-b:2", LEASE_S)
    assert second["id"] == queued["id"] and second["attempt"] == 2
    # host-a comes back: its heartbeat and its outcome are refused.
    assert jobs.renew(pool, "host-a:1", {first["id"]: 1}, LEASE_S) == set()
    assert not jobs.finish(pool, first, [], None)
    assert jobs.finish(pool, second, [{"id": "x", "collection": "c"}], None)
    assert jobs.get(pool, queued["id"])["status"] == "succeeded"
    (a1, w1, o1, s1, e1), (a2, w2, o2, s2, e2) = attempts(pool, queued["id"])
    assert (a1, w1, o1, a2, w2, o2) == (1, "host-a:1", "lease-expired", 2, "host-b:2", "succeeded")
    assert s1 < e1 <= s2 < e2


def test_a_job_whose_workers_keep_dying_fails_after_max_attempts(pool):
    queued = jobs.enqueue(pool, "/nowhere.tif", "c", None)
    for n in (1, 2):
        assert jobs.claim(pool, f"host:{n}", LEASE_S)["attempt"] == n
        time.sleep(LEASE_S + 0.1)
        failed = jobs.reap(pool, max_attempts=2)
    assert [f["id"] for f in failed] == [queued["id"]]
    job = jobs.get(pool, queued["id"])
    assert job["status"] == "failed" and job["error"]["code"] == "WorkerLost"
    assert [a[2] for a in attempts(pool, queued["id"])] == ["lease-expired", "lease-expired"]
    assert jobs.claim(pool, "host:3", LEASE_S) is None


def test_a_starting_worker_ends_the_leases_of_this_hosts_dead_processes_only(pool):
    host, me = socket.gethostname(), os.getpid()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        holders = {
            "dead here": f"{host}:{dead.pid}:aaaa",
            "restarted here": f"{host}:{me}:bbbb",  # this pid, an earlier start (a container)
            "alive here": f"{host}:{alive.pid}:cccc",
            "elsewhere": f"other-host:{dead.pid}:dddd",
        }
        held = {}
        for what, worker in holders.items():
            jobs.enqueue(pool, f"/{what}.tif", "c", None)
            held[what] = jobs.claim(pool, worker, 600)["id"]
        assert jobs.expire_dead_local(pool, f"{host}:{me}:eeee") == 2
        jobs.reap(pool, max_attempts=3)
        status = {what: jobs.get(pool, job_id)["status"] for what, job_id in held.items()}
    finally:
        alive.kill()
        alive.wait()
    assert status == {
        "dead here": "queued",
        "restarted here": "queued",
        "alive here": "running",
        "elsewhere": "running",
    }


def test_a_database_lost_mid_job_fails_nothing_and_the_worker_runs_it_again(
    pool, tmp_path, monkeypatch
):
    """The connection dies under a running job (PostgreSQL restarted): the job is not failed,
    the worker thread survives, and the job runs again under a new attempt once its lease ends."""
    runs = []

    def pipeline(path, conn, settings, collection, when, accept):
        runs.append(path.name)
        if len(runs) == 1:
            raise psycopg.errors.AdminShutdown(
                "terminating connection due to administrator command"
            )
        return [{"id": "scene", "collection": collection}]

    monkeypatch.setattr(jobs, "ingest_path", pipeline)
    queued = jobs.enqueue(pool, "/scene.tif", "c", None)
    settings = Settings(
        assets_dir=tmp_path / "assets", work_dir=tmp_path / "work", lease_s=LEASE_S,
        poll_interval_s=0.05, max_attempts=3,
    )  # fmt: skip
    workers = jobs.Workers(pool, settings)
    workers.start()
    try:
        deadline = time.monotonic() + 30
        while jobs.get(pool, queued["id"])["status"] != "succeeded":
            assert time.monotonic() < deadline, jobs.get(pool, queued["id"])
            time.sleep(0.05)
    finally:
        workers.stop()
    assert runs == ["scene.tif", "scene.tif"]
    assert [a[2] for a in attempts(pool, queued["id"])] == ["lease-expired", "succeeded"]
    assert all(t.is_alive() is False for t in workers.threads)  # stopped, not died earlier


def item_state(pool, collection):
    """(item id, data href) of the collection's items and the events recorded for them."""
    with pool.connection() as conn:
        items = conn.execute(
            "SELECT id, content->'assets'->'data'->>'href' FROM pgstac.items WHERE collection = %s",
            (collection,),
        ).fetchall()
        events = conn.execute(
            "SELECT type FROM csdr.item_events WHERE collection = %s ORDER BY id", (collection,)
        ).fetchall()
    return items, [e[0] for e in events]


def test_a_job_run_again_after_its_worker_died_past_the_publish_publishes_nothing_twice(
    pool, tmp_path
):
    """The worker dies after the item's transaction committed and before the outcome was
    recorded: the next attempt leaves the item as the first published it (no second version, no
    `updated` event for subscribers) and removes its own files; the dead attempt, were it to come
    back, publishes nothing."""
    source = write_scene(replace(DEMO_SCENES[0], size=256, name="LEASE_1"), tmp_path)
    settings = Settings(assets_dir=tmp_path / "assets", work_dir=tmp_path / "work", lease_s=LEASE_S)
    queued = jobs.enqueue(pool, str(source), "leases", None)
    first = jobs.claim(pool, "host-a:1", LEASE_S)
    items, error = jobs.run_pipeline(pool, first, settings)  # ... and host-a dies here
    assert error is None and [i["id"] for i in items] == ["LEASE_1"]
    assert jobs.get(pool, queued["id"])["items"] == items  # recorded with the item
    published, events = item_state(pool, "leases")
    files = sorted(p.name for p in (tmp_path / "assets").rglob("*") if p.is_file())
    assert [p[0] for p in published] == ["LEASE_1"] and events == ["created"]

    time.sleep(LEASE_S + 0.1)
    jobs.reap(pool, max_attempts=3)
    second = jobs.claim(pool, "host-b:2", LEASE_S)
    assert second["attempt"] == 2
    assert jobs.run_job(pool, second, settings) == "succeeded"
    assert item_state(pool, "leases") == (published, ["created"])
    assert sorted(p.name for p in (tmp_path / "assets").rglob("*") if p.is_file()) == files
    assert jobs.get(pool, queued["id"])["items"] == items

    with pytest.raises(LeaseLost, match="attempt 1 lost its lease"):
        jobs.run_pipeline(pool, first, settings)
    assert item_state(pool, "leases") == (published, ["created"])
    assert sorted(p.name for p in (tmp_path / "assets").rglob("*") if p.is_file()) == files


def test_a_failed_job_keeps_the_items_it_published_before_failing(pool):
    queued = jobs.enqueue(pool, "/two-products.tar.gz", "c", None)
    job = jobs.claim(pool, "host-a:1", LEASE_S)
    with pool.connection() as conn, conn.transaction(), publishing_for(job):
        assert record(conn, "c", "FIRST")  # the first product's transaction
    error = {"code": "SourceUnreadable", "description": "the second product's image"}
    assert jobs.finish(pool, job, [], error)
    done = jobs.get(pool, queued["id"])
    assert done["status"] == "failed" and done["items"] == [{"id": "FIRST", "collection": "c"}]
