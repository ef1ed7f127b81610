"""A streaming standby of a test cluster on this machine (`pg_basebackup -R`, as the postgres
user, on a free port), and waiting for it to replay the primary: for the read-replica tests and
benchmark."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from conftest import free_port
from infra.local.pgcluster import Cluster


@contextmanager
def standby_of(primary: Cluster) -> Iterator[Cluster]:
    """A hot standby of `primary`, running until the block ends."""
    base = Path(tempfile.mkdtemp(prefix="csdr-standby-"))
    base.chmod(0o755)  # the postgres user reaches its data directory through it
    cluster = Cluster(
        data_dir=base / "pg",
        port=free_port(),
        log_file=base / "logs" / "pg.log",
        socket_dir=base / "run",
        throwaway=True,
    )
    try:
        cluster.follow(primary)
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def replayed(primary: str, standby: str, timeout_s: float = 90) -> float:
    """Wait until `standby` has replayed everything `primary` wrote (conninfo strings); return
    how long that took, in seconds. The target is WAL inserted, not yet written: with
    `synchronous_commit = off` (the test clusters) a commit may not be written yet."""
    start = time.monotonic()
    with psycopg.connect(primary, autocommit=True) as conn:
        [[target]] = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchall()
    with psycopg.connect(standby, autocommit=True) as conn:
        while True:
            [[done]] = conn.execute(
                "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)
            ).fetchall()
            if done:
                return time.monotonic() - start
            if time.monotonic() - start > timeout_s:
                raise TimeoutError("the standby did not replay the primary's WAL")
            time.sleep(0.02)
