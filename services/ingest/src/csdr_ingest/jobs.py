"""The durable job queue (table csdr.ingest_jobs) and the workers that drain it.

Jobs are rows: POST /jobs inserts one, a worker claims the oldest queued row with
FOR UPDATE SKIP LOCKED (so processes on many hosts can share the queue) under a lease of
`lease_s` that a heartbeat thread renews every third of it. A job whose lease ended (its worker
died or lost the database) is queued again by the next claim, or failed after `max_attempts`;
every claim is an attempt row (csdr.ingest_attempts). A worker records an outcome only while it
still holds the job's attempt, so a job is never finished by two workers. What else must happen
when a job ends (the inbox moving its package) is a hook given to the workers where the app is
built.
"""

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from csdr_ingest.claims import LeaseLost, publishing_for
from csdr_ingest.cresda.sun import ACCEPT_OPTION
from csdr_ingest.errors import DiskFull, IngestError, is_disk_full
from csdr_ingest.offline import OFFLINE_OPTION, register_offline
from csdr_ingest.packages import scratch_root
from csdr_ingest.pipeline import ingest_path, process_alive, remove_abandoned
from csdr_ingest.settings import Settings

logger = logging.getLogger(__name__)

JOB_COLUMNS = "id, status, source, collection, items, error, created_at, started_at, finished_at"


def enqueue(
    pool: ConnectionPool,
    source: str,
    collection: str | None,
    when: datetime | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Queue a job; return it (None when an inbox job for this file is already active)."""
    options = {"datetime": when.isoformat()} if when else {}
    options |= extra or {}
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"INSERT INTO csdr.ingest_jobs (id, source, collection, options)"
            f" VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING {JOB_COLUMNS}",
            (uuid.uuid4(), source, collection, Jsonb(options)),
        )
        return cur.fetchone()


def get(pool: ConnectionPool, job_id: uuid.UUID) -> dict[str, Any] | None:
    """One job, or None."""
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT {JOB_COLUMNS} FROM csdr.ingest_jobs WHERE id = %s", (job_id,))
        return cur.fetchone()


LOST_ERROR = {
    "code": "WorkerLost",
    "description": "the workers running this job stopped (killed or cut off from the database)"
    " before it ended, as many times as the retry limit allows",
}


def reap(pool: ConnectionPool, max_attempts: int) -> list[dict[str, Any]]:
    """Close the attempts whose lease ended; queue their jobs again, or fail those that used
    `max_attempts`. Return the failed jobs (their hook is still to run)."""
    with pool.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT id, source, collection, options, attempts, lease_until FROM csdr.ingest_jobs"
            " WHERE status = 'running' AND (lease_until IS NULL OR lease_until < now())"
            " FOR UPDATE SKIP LOCKED"
        )
        lost = cur.fetchall()
        failed = []
        for job in lost:
            cur.execute(
                "UPDATE csdr.ingest_attempts SET ended_at = coalesce(%s, now()),"
                " outcome = 'lease-expired' WHERE job_id = %s AND attempt = %s"
                " AND ended_at IS NULL",
                (job["lease_until"], job["id"], job["attempts"]),
            )
            give_up = job["attempts"] >= max_attempts
            cur.execute(
                "UPDATE csdr.ingest_jobs SET status = %s, error = %s, lease_until = NULL,"
                " worker = NULL, finished_at = CASE WHEN %s THEN now() END WHERE id = %s",
                (
                    "failed" if give_up else "queued",
                    Jsonb(LOST_ERROR) if give_up else None,
                    give_up,
                    job["id"],
                ),
            )
            logger.warning(
                "job %s: attempt %d lost its lease; %s",
                job["id"],
                job["attempts"],
                "failed" if give_up else "queued again",
            )
            if give_up:
                failed.append(job)
        return failed


def claim(pool: ConnectionPool, worker: str, lease_s: float = 30.0) -> dict[str, Any] | None:
    """Lease the oldest queued job to `worker` for `lease_s`, record the attempt, and return the
    job with its `worker` and `attempt` number (None when idle)."""
    with pool.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "UPDATE csdr.ingest_jobs SET status = 'running', started_at = now(), worker = %s,"
            " attempts = attempts + 1, lease_until = now() + make_interval(secs => %s)"
            " WHERE id = (SELECT id FROM csdr.ingest_jobs WHERE status = 'queued'"
            "             ORDER BY created_at FOR UPDATE SKIP LOCKED LIMIT 1)"
            " RETURNING id, source, collection, options, worker, attempts AS attempt",
            (worker, lease_s),
        )
        job = cur.fetchone()
        if job is not None:
            cur.execute(
                "INSERT INTO csdr.ingest_attempts (job_id, attempt, worker, started_at)"
                " VALUES (%s, %s, %s, now())",
                (job["id"], job["attempt"], worker),
            )
        return job


def renew(
    pool: ConnectionPool, worker: str, held: dict[uuid.UUID, int], lease_s: float
) -> set[uuid.UUID]:
    """Extend the leases `worker` holds ({job id: attempt}); return the jobs still held."""
    if not held:
        return set()
    with pool.connection() as conn:
        rows = conn.execute(
            "UPDATE csdr.ingest_jobs j SET lease_until = now() + make_interval(secs => %s)"
            " FROM unnest(%s::uuid[], %s::int[]) AS h(id, attempt)"
            " WHERE j.id = h.id AND j.attempts = h.attempt AND j.worker = %s"
            " AND j.status = 'running' RETURNING j.id",
            (lease_s, list(held), list(held.values()), worker),
        ).fetchall()
    return {r[0] for r in rows}


def finish(
    pool: ConnectionPool,
    job: dict[str, Any],
    items: list[dict[str, Any]],
    error: dict[str, str] | None,
) -> bool:
    """Record the outcome of a claimed job if its worker still holds the attempt; False when it
    lost the lease (another worker has or will run it, and records the outcome). A failed job
    keeps the items published before its failure (csdr_ingest.claims records each)."""
    status = "failed" if error else "succeeded"
    with pool.connection() as conn, conn.transaction():
        cur = conn.execute(
            "UPDATE csdr.ingest_jobs SET status = %s, items = coalesce(%s, items), error = %s,"
            " finished_at = now(), lease_until = NULL"
            " WHERE id = %s AND attempts = %s AND worker = %s AND status = 'running'",
            (
                status,
                None if error else Jsonb(items),
                Jsonb(error) if error else None,
                job["id"],
                job["attempt"],
                job["worker"],
            ),
        )
        if cur.rowcount == 0:
            return False
        conn.execute(
            "UPDATE csdr.ingest_attempts SET ended_at = now(), outcome = %s"
            " WHERE job_id = %s AND attempt = %s",
            (status, job["id"], job["attempt"]),
        )
        return True


def expire_dead_local(pool: ConnectionPool, worker: str) -> int:
    """End now the leases of jobs whose worker (`host:pid:nonce`) was a process of this host that
    no longer runs, or an earlier process with this one's pid (a container restarted: pid 1
    again), so a restart need not wait for the lease; return how many. Call it before `worker`
    claims anything."""
    host, pid, _ = worker.split(":")
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT id, worker FROM csdr.ingest_jobs WHERE status = 'running'"
            " AND split_part(worker, ':', 1) = %s AND worker <> %s",
            (host, worker),
        ).fetchall()
        dead = [
            job_id
            for job_id, other in rows
            if other.split(":")[1] == pid or not process_alive(int(other.split(":")[1]))
        ]
        if dead:
            conn.execute(
                "UPDATE csdr.ingest_jobs SET lease_until = now() - interval '1 microsecond'"
                " WHERE id = ANY(%s) AND status = 'running'",
                (dead,),
            )
        return len(dead)


def depth(pool: ConnectionPool) -> dict[str, int]:
    """Jobs queued and running on the whole queue (every host's workers)."""
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM csdr.ingest_jobs"
            " WHERE status IN ('queued', 'running') GROUP BY status"
        ).fetchall()
    return {"queued": 0, "running": 0} | {status: int(n) for status, n in rows}


# Called with a job's outcome (succeeded, failed) and how long it ran, in seconds.
JobTimed = Callable[[str, float], None]
# Called with a job and its error (None: published) once the outcome is recorded.
JobFinished = Callable[[dict[str, Any], dict[str, str] | None], None]


def run_pipeline(
    pool: ConnectionPool, job: dict[str, Any], settings: Settings
) -> tuple[list[dict[str, Any]], dict[str, str] | None]:
    """Run one claimed job through the pipeline: the published items' references, or the reason
    it failed. A database that went away (psycopg.OperationalError) is not the scene's failure:
    it goes up, nothing is recorded, and the job runs again once its lease ends; so does a lost
    lease (LeaseLost: the attempt that holds it publishes)."""
    when = job["options"].get("datetime")
    try:
        with pool.connection() as conn, publishing_for(job):
            if job["options"].get(OFFLINE_OPTION):
                items = register_offline(Path(job["source"]), conn, settings, job["collection"])
            else:
                items = ingest_path(
                    Path(job["source"]),
                    conn,
                    settings,
                    job["collection"],
                    datetime.fromisoformat(when) if when else None,
                    bool(job["options"].get(ACCEPT_OPTION)),
                )
        return [{"id": i["id"], "collection": i["collection"]} for i in items], None
    except IngestError as exc:
        logger.warning("job %s failed: %s", job["id"], exc)
        return [], exc.to_dict()
    except (psycopg.OperationalError, LeaseLost):
        raise
    except Exception as exc:
        if is_disk_full(exc):
            where = f"assets in {settings.assets_dir}, scratch in {scratch_root(settings.work_dir)}"
            full = DiskFull(f"no space left to write the scene's files ({where}): {exc}")
            logger.error("job %s failed: %s", job["id"], full)
            return [], full.to_dict()
        logger.exception("job %s failed unexpectedly", job["id"])
        return [], {
            "code": "InternalError",
            "description": f"unexpected failure; see the ingest log ({job['id']})",
        }


def run_job(
    pool: ConnectionPool,
    job: dict[str, Any],
    settings: Settings,
    finished: JobFinished | None = None,
) -> str | None:
    """Run a claimed job through the pipeline, record its outcome and call `finished`; return
    the outcome (`succeeded`, `failed`), or None when its lease was lost meanwhile (the job is
    then another worker's)."""
    items, error = run_pipeline(pool, job, settings)
    if not finish(pool, job, items, error):
        logger.warning("job %s: lease lost before the end; its outcome is dropped", job["id"])
        return None
    if finished is not None:
        finished(job, error)
    return "failed" if error else "succeeded"


class Workers:
    """Threads that claim and run jobs until stopped: woken when this process queues a job,
    and polling for jobs queued by other processes; one more thread renews their leases."""

    def __init__(
        self,
        pool: ConnectionPool,
        settings: Settings,
        finished: JobFinished | None = None,
        timed: JobTimed | None = None,
    ) -> None:
        """Run up to `settings.workers` jobs at once; call `finished` after each, and `timed`
        with its outcome and duration."""
        self.pool = pool
        self.settings = settings
        self.finished = finished
        self.timed = timed
        self.stopping = threading.Event()
        self.wake = threading.Condition()
        # Unique per process start: pids repeat across container restarts.
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.held: dict[uuid.UUID, int] = {}
        self.held_lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._loop, name=f"ingest-worker-{i}", daemon=True)
            for i in range(settings.workers)
        ]
        self.threads.append(
            threading.Thread(target=self._heartbeat, name="ingest-heartbeat", daemon=True)
        )

    def start(self) -> None:
        """End the leases of this host's dead processes, then start the threads."""
        if n := expire_dead_local(self.pool, self.name):
            logger.warning("%d job(s) left running by a stopped process will run again", n)
        with self.pool.connection() as conn:
            if n := remove_abandoned(conn, self.settings):
                logger.warning("removed the files of %d ingest(s) a stopped process left", n)
        for t in self.threads:
            t.start()

    def notify(self) -> None:
        """Wake idle workers now (a job was queued by this process)."""
        with self.wake:
            self.wake.notify_all()

    def stop(self, timeout_s: float = 30) -> None:
        """Let running jobs finish (up to `timeout_s`) and stop."""
        self.stopping.set()
        self.notify()
        for t in self.threads:
            t.join(timeout_s)

    def run(self, job: dict[str, Any]) -> None:
        """Run one claimed job under its lease; record its outcome and call the hook, unless
        the lease was lost meanwhile (the job is then another worker's)."""
        with self.held_lock:
            self.held[job["id"]] = job["attempt"]
        start = time.monotonic()
        try:
            outcome = run_job(self.pool, job, self.settings, self.finished)
        finally:
            with self.held_lock:
                self.held.pop(job["id"], None)
        if self.timed is not None and outcome is not None:
            self.timed(outcome, time.monotonic() - start)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                for failed in reap(self.pool, self.settings.max_attempts):
                    if self.finished is not None:
                        self.finished(failed, LOST_ERROR)
                job = claim(self.pool, self.name, self.settings.lease_s)
            except Exception:
                logger.exception("cannot claim jobs; retrying")
                job = None
            if job is not None:
                try:
                    self.run(job)
                except Exception as exc:  # the worker lives on: the lease gives the job back
                    why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    logger.warning(
                        "job %s stopped without an outcome (%s); it runs again once its lease ends",
                        job["id"],
                        why,
                    )
                    self.stopping.wait(self.settings.poll_interval_s)
                continue
            with self.wake:
                self.wake.wait(self.settings.poll_interval_s)

    def _heartbeat(self) -> None:
        while not self.stopping.wait(self.settings.lease_s / 3):
            with self.held_lock:
                held = dict(self.held)
            try:
                kept = renew(self.pool, self.name, held, self.settings.lease_s)
            except Exception:
                logger.exception("cannot renew the leases of %d job(s)", len(held))
                continue
            for job_id in held.keys() - kept:
                logger.warning("job %s: lease lost to another worker", job_id)


def prune(pool: ConnectionPool, keep: timedelta) -> int:
    """Remove the records of jobs that ended more than `keep` ago (csdr.prune_ingest_jobs)."""
    with pool.connection() as conn:
        row = conn.execute("SELECT csdr.prune_ingest_jobs(%s)", (keep,)).fetchone()
    return int(row[0]) if row else 0
