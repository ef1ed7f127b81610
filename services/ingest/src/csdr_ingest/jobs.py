"""The durable job queue (table csdr.ingest_jobs) and the workers that drain it.

Jobs are rows: POST /jobs inserts one, a worker claims the oldest queued row with
FOR UPDATE SKIP LOCKED (so several processes can share the queue), runs the pipeline, and records
the outcome. A job left `running` by a process that died is queued again when a worker starts.
What else must happen when a job ends (the inbox moving its package) is a hook given to the
workers where the app is built.
"""

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from csdr_ingest.cresda.sun import ACCEPT_OPTION
from csdr_ingest.errors import IngestError
from csdr_ingest.offline import OFFLINE_OPTION, register_offline
from csdr_ingest.pipeline import ingest_path, remove_abandoned
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


def claim(pool: ConnectionPool, worker: str) -> dict[str, Any] | None:
    """Mark the oldest queued job as running for `worker` and return it (None when idle)."""
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "UPDATE csdr.ingest_jobs SET status = 'running', started_at = now(), worker = %s"
            " WHERE id = (SELECT id FROM csdr.ingest_jobs WHERE status = 'queued'"
            "             ORDER BY created_at FOR UPDATE SKIP LOCKED LIMIT 1)"
            " RETURNING id, source, collection, options",
            (worker,),
        )
        return cur.fetchone()


def finish(
    pool: ConnectionPool,
    job_id: uuid.UUID,
    items: list[dict[str, Any]],
    error: dict[str, str] | None,
) -> None:
    """Record a job's outcome."""
    status = "failed" if error else "succeeded"
    with pool.connection() as conn:
        conn.execute(
            "UPDATE csdr.ingest_jobs SET status = %s, items = %s, error = %s, finished_at = now()"
            " WHERE id = %s",
            (status, Jsonb(items), Jsonb(error) if error else None, job_id),
        )


def requeue_orphans(pool: ConnectionPool, host: str) -> int:
    """Queue again the jobs this host's dead processes left running; return how many."""
    with pool.connection() as conn:
        cur = conn.execute(
            "UPDATE csdr.ingest_jobs SET status = 'queued', started_at = NULL, worker = NULL"
            " WHERE status = 'running' AND split_part(worker, ':', 1) = %s"
            " AND split_part(worker, ':', 2)::int <> %s",
            (host, os.getpid()),
        )
        return cur.rowcount


# Called with a job and its error (None: published) once the outcome is recorded.
JobFinished = Callable[[dict[str, Any], dict[str, str] | None], None]


def run_job(
    pool: ConnectionPool,
    job: dict[str, Any],
    settings: Settings,
    finished: JobFinished | None = None,
) -> None:
    """Run one claimed job through the pipeline, record success or the reason it failed, then
    call `finished`."""
    when = job["options"].get("datetime")
    try:
        with pool.connection() as conn:
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
        refs = [{"id": i["id"], "collection": i["collection"]} for i in items]
        error = None
    except IngestError as exc:
        logger.warning("job %s failed: %s", job["id"], exc)
        refs, error = [], exc.to_dict()
    except Exception:
        logger.exception("job %s failed unexpectedly", job["id"])
        refs, error = (
            [],
            {
                "code": "InternalError",
                "description": f"unexpected failure; see the ingest log ({job['id']})",
            },
        )
    finish(pool, job["id"], refs, error)
    if finished is not None:
        finished(job, error)


class Workers:
    """Threads that claim and run jobs until stopped: woken when this process queues a job,
    and polling for jobs queued by other processes."""

    def __init__(
        self, pool: ConnectionPool, settings: Settings, finished: JobFinished | None = None
    ) -> None:
        """Run up to `settings.workers` jobs at once; call `finished` after each."""
        self.pool = pool
        self.settings = settings
        self.finished = finished
        self.stopping = threading.Event()
        self.wake = threading.Condition()
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.threads = [
            threading.Thread(target=self._loop, name=f"ingest-worker-{i}", daemon=True)
            for i in range(settings.workers)
        ]

    def start(self) -> None:
        """Requeue orphans, then start the worker threads."""
        if n := requeue_orphans(self.pool, socket.gethostname()):
            logger.warning("requeued %d job(s) left running by a stopped process", n)
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

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                job = claim(self.pool, self.name)
            except Exception:
                logger.exception("cannot claim jobs; retrying")
                job = None
            if job is not None:
                run_job(self.pool, job, self.settings, self.finished)
                continue
            with self.wake:
                self.wake.wait(self.settings.poll_interval_s)
