"""Ingest job records under steady traffic: a month of simulated days of jobs that succeed, fail
or stay queued; pruning keeps the retention's days of ended jobs (their attempts go with them)
and never touches a queued or running one."""

import uuid
from datetime import timedelta

import psycopg
from psycopg_pool import ConnectionPool

from csdr_ingest.jobs import prune

DAYS, JOBS_PER_DAY, KEEP_DAYS = 30, 10, 7


def a_day_of_jobs(conn: psycopg.Connection, day: int) -> None:
    """Eight jobs that succeeded, one that failed (each with its attempt), one still queued."""
    for n in range(JOBS_PER_DAY):
        status = "queued" if n == 0 else "failed" if n == 1 else "succeeded"
        job = uuid.uuid4()
        conn.execute(
            "INSERT INTO csdr.ingest_jobs (id, source, status, finished_at)"
            " VALUES (%s, %s, %s, CASE WHEN %s <> 'queued' THEN now() END)",
            (job, f"/inbox/day{day}-{n}.tif", status, status),
        )
        if status != "queued":
            conn.execute(
                "INSERT INTO csdr.ingest_attempts (job_id, attempt, worker, started_at,"
                " ended_at, outcome) VALUES (%s, 1, 'host:1:a', now(), now(), %s)",
                (job, status),
            )


def a_day_passes(conn: psycopg.Connection) -> None:
    conn.execute(
        "UPDATE csdr.ingest_jobs SET created_at = created_at - interval '1 day',"
        " finished_at = finished_at - interval '1 day'"
    )


def counts(conn: psycopg.Connection) -> tuple[int, int, int]:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM csdr.ingest_jobs WHERE status <> 'queued'),"
        " (SELECT count(*) FROM csdr.ingest_jobs WHERE status = 'queued'),"
        " (SELECT count(*) FROM csdr.ingest_attempts)"
    ).fetchone()
    assert row is not None
    return row


def test_ended_jobs_stay_for_the_retention_and_queued_ones_always(pg_env) -> None:
    with (
        psycopg.connect(autocommit=True) as conn,
        ConnectionPool(min_size=1, max_size=1, kwargs={"autocommit": True}) as pool,
    ):
        history = []
        for day in range(DAYS):
            a_day_of_jobs(conn, day)
            prune(pool, timedelta(days=KEEP_DAYS))
            history.append(counts(conn))
            a_day_passes(conn)
        ended_per_day = JOBS_PER_DAY - 1
        assert all(ended <= KEEP_DAYS * ended_per_day for ended, _, _ in history), history
        ended, queued, attempts = history[-1]
        assert ended == attempts == KEEP_DAYS * ended_per_day  # attempts go with their jobs
        assert queued == DAYS  # never pruned
