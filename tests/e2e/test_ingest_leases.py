"""Workers on many hosts: three ingest processes share one queue; the one running a job is
SIGKILLed mid-job. The job is claimed again only once its lease has ended, by another worker,
and completes once; the recorded attempts never overlap."""

from __future__ import annotations

import os
import signal
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import httpx
import psycopg
import pytest

from conftest import TEMPLATE_DB, free_port
from csdr_access.admin import add_org, issue_key
from csdr_ingest.synthetic import DEMO_SCENES, Scene, write_scene
from tests.e2e.inbox import wait_for
from tests.e2e.processes import service_process

LEASE_S = 2.0
# Big enough that the COG takes seconds to write: the kill lands mid-job.
BIG = Scene(**{**DEMO_SCENES[0].__dict__, "size": 3000, "name": "lease_scene"})


@pytest.fixture
def queue_db(pg_cluster):
    name = f"lease_{uuid.uuid4().hex[:8]}"
    pg_cluster.create_database(name, template=TEMPLATE_DB)
    yield pg_cluster.env(name), pg_cluster.conninfo(name)
    with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def job_row(db: str, job_id: str) -> tuple:
    with psycopg.connect(db) as conn:
        return conn.execute(
            "SELECT status, worker, attempts, items FROM csdr.ingest_jobs WHERE id = %s",
            (job_id,),
        ).fetchone()


def test_a_killed_workers_job_runs_once_more_on_another_worker_after_its_lease(
    queue_db, tmp_path: Path
):
    env, db = queue_db
    env = {
        **env,
        "CSDR_INGEST_ASSETS_DIR": str(tmp_path / "assets"),
        "CSDR_INGEST_POLL_INTERVAL_S": "0.2",
        "CSDR_INGEST_LEASE_S": str(LEASE_S),
    }
    source = write_scene(BIG, tmp_path)
    with psycopg.connect(db, autocommit=True) as conn:
        add_org(conn, "Lease node", "CN", "main", "test")
        key = issue_key(conn, "Lease node", ["ingest"], "test")[0]

    with ExitStack() as stack:
        workers = [
            stack.enter_context(
                service_process("csdr_ingest.app:create_app", free_port(), env, tmp_path)
            )
            for _ in range(3)
        ]
        by_pid = {proc.pid: url for url, proc in workers}
        r = httpx.post(
            f"{workers[0][0]}/jobs",
            json={"source": str(source), "collection": "leases"},
            headers={"X-API-Key": key},
        )
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]

        wait_for(lambda: job_row(db, job_id)[0] == "running", 60, "a worker to claim the job")
        time.sleep(0.5)  # into the COG writing
        status, worker, attempts, _ = job_row(db, job_id)
        assert (status, attempts) == ("running", 1), "the job ended before the kill"
        victim = int(worker.split(":")[1])
        assert victim in by_pid
        os.kill(victim, signal.SIGKILL)
        killed_at = time.time()

        wait_for(lambda: job_row(db, job_id)[0] != "running", 120, "the job to run again")
        wait_for(lambda: job_row(db, job_id)[0] == "succeeded", 120, "the retried job to end")
        status, worker, attempts, items = job_row(db, job_id)
        # The API answers from a live worker: succeeded, once, with the one item.
        live = next(url for pid, url in by_pid.items() if pid != victim)
        job = httpx.get(f"{live}/jobs/{job_id}", headers={"X-API-Key": key}).json()
        assert job["status"] == "succeeded"
        assert job["items"] == [{"id": BIG.name, "collection": "leases"}]

    with psycopg.connect(db) as conn:
        recorded = conn.execute(
            "SELECT attempt, worker, extract(epoch FROM started_at),"
            " extract(epoch FROM ended_at), outcome FROM csdr.ingest_attempts"
            " WHERE job_id = %s ORDER BY attempt",
            (job_id,),
        ).fetchall()
        [[n_items]] = conn.execute(
            "SELECT count(*) FROM pgstac.items WHERE id = %s", (BIG.name,)
        ).fetchall()
    assert n_items == 1
    assert [(a[0], a[4]) for a in recorded] == [(1, "lease-expired"), (2, "succeeded")]
    first, second = recorded
    assert int(first[1].split(":")[1]) == victim
    assert int(second[1].split(":")[1]) in by_pid and second[1] != first[1]
    # Never on two workers at once: the retry starts after the killed attempt's lease ended,
    # and that lease ended no sooner than a heartbeat interval short of a lease after the kill.
    assert float(second[2]) >= float(first[3])
    assert float(first[3]) >= killed_at + LEASE_S - LEASE_S / 3 - 0.2
    assert float(second[3]) > float(second[2])
