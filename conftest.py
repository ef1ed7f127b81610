"""Session fixtures shared by every test: one throwaway PostgreSQL + PostGIS + pgSTAC cluster, one
migrated template database, and a fresh copy of it for each test that asks for a database."""

from __future__ import annotations

import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from infra.db.migrate import migrate
from infra.local.pgcluster import Cluster

TEMPLATE_DB = "csdr_template"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A private cluster for this test session, migrated once into a template database."""
    base = Path(tempfile.mkdtemp(prefix="csdr-test-"))
    base.chmod(0o755)
    cluster = Cluster(
        data_dir=base / "pg",
        port=free_port(),
        log_file=base / "logs" / "pg.log",
        socket_dir=base / "run",
        throwaway=True,
    )
    try:
        cluster.start()
        cluster.create_database(TEMPLATE_DB)
        migrate(cluster.conninfo(TEMPLATE_DB))
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def database(pg_cluster: Cluster) -> Iterator[dict[str, str]]:
    """A fresh migrated database for one test; yields its PG* variables."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg_cluster.create_database(name, template=TEMPLATE_DB)
    yield pg_cluster.env(name)
    with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_env(database: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The fresh database's PG* variables, also set in os.environ for libraries that read them."""
    for key, value in database.items():
        monkeypatch.setenv(key, value)
    return database
