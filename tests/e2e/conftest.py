"""End-to-end fixtures: a whole node (catalog, tiler and ingest as real processes on 127.0.0.1,
over one fresh database of the session's throwaway cluster), an ingest inbox, and a fresh clone
of the repository. Every test under tests/e2e is marked slow: `make test-fast` leaves them out."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from conftest import TEMPLATE_DB, free_port
from csdr_access.admin import add_org, issue_key
from infra.local.pgcluster import Cluster
from tests.e2e.processes import service
from tests.support.s3 import S3Server, s3_server

E2E_DIR = Path(__file__).resolve().parent
REPO_ROOT = E2E_DIR.parents[1]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """End-to-end tests start processes: all of them are slow."""
    for item in items:
        if item.path.is_relative_to(E2E_DIR):
            item.add_marker(pytest.mark.slow)


@dataclass
class Clone:
    """A clone of the repository and the environment that runs `make` in it."""

    path: Path
    env: dict[str, str]

    def make(
        self, target: str, env: dict[str, str], timeout_s: float = 900
    ) -> subprocess.CompletedProcess[str]:
        """Run `make <target>` in the clone with `env` added to the clone's environment."""
        return subprocess.run(
            ["make", "--no-print-directory", target],
            cwd=self.path,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )


@pytest.fixture
def clone() -> Iterator[Clone]:
    """A clone of HEAD (commit what it should hold) in a fresh mode-700 folder with nothing
    beside it, like a clone in root's home. `make` there uses this session's venv (VENV: no
    second install; its stamp matches while the requirements are those of HEAD) and the clone's
    own sources (PYTHONPATH before the venv's editable installs of this checkout)."""
    home = Path(tempfile.mkdtemp(prefix="csdr-home-"))  # mkdtemp: mode 700
    path = home / "csdr-node"
    done = subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(REPO_ROOT), str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    sources = sorted(str(p) for p in path.glob("*/*/src"))
    env = {**os.environ, "VENV": str(Path(sys.prefix).absolute()), "PYTHONPATH": ":".join(sources)}
    for key in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "CSDR_DATA_DIR"):
        env.pop(key, None)
    yield Clone(path, env)
    shutil.rmtree(home, ignore_errors=True)


@dataclass
class Node:
    """URLs of the running services and where they keep their state."""

    catalog: str
    tiler: str
    ingest: str
    assets_dir: Path
    env: dict[str, str]
    ingest_headers: dict[str, str]
    """Headers with a key of the ingest scope: POST /jobs and GET /jobs/{id} need one."""

    def run_job(self, source: Path, collection: str, timeout_s: float = 120) -> dict:
        """Queue `source` through POST /jobs and return the job once it has finished."""
        body = {"source": str(source), "collection": collection}
        r = httpx.post(f"{self.ingest}/jobs", json=body, headers=self.ingest_headers)
        assert r.status_code == 202, r.text
        job_url = f"{self.ingest}/jobs/{r.json()['id']}"
        deadline = time.monotonic() + timeout_s
        while (job := httpx.get(job_url, headers=self.ingest_headers).json())["status"] not in (
            "succeeded",
            "failed",
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(job)
            time.sleep(0.2)
        return job


@contextmanager
def running_node(
    pg_cluster: Cluster, base: Path, extra_env: dict[str, str] | None = None
) -> Iterator[Node]:
    """Catalog, tiler and ingest over a fresh database, with `extra_env` added to theirs."""
    name = f"e2e_{uuid.uuid4().hex[:8]}"
    pg_cluster.create_database(name, template=TEMPLATE_DB)
    ports = {svc: free_port() for svc in ("catalog", "tiler", "ingest")}
    env = {
        **pg_cluster.env(name),
        "CSDR_INGEST_ASSETS_DIR": str(base / "assets"),
        "CSDR_INGEST_POLL_INTERVAL_S": "0.2",
        "CSDR_CATALOG_TILER_URL": f"http://127.0.0.1:{ports['tiler']}",
        # Every test here calls from 127.0.0.1: those sending bad keys on purpose must not lock
        # out the next (test_key_guessing.py tests the limit itself).
        "CSDR_ACCESS_MAX_KEY_FAILURES": "10000",
        **(extra_env or {}),
    }
    try:
        with ExitStack() as stack:
            urls = {
                svc: stack.enter_context(service(f"csdr_{svc}.app:create_app", port, env, base))
                for svc, port in ports.items()
            }
            with psycopg.connect(pg_cluster.conninfo(name), autocommit=True) as conn:
                add_org(conn, "E2E node", "CN", "main", "test")
                key = issue_key(conn, "E2E node", ["ingest"], "test")[0]
            yield Node(
                **urls, assets_dir=base / "assets", env=env, ingest_headers={"X-API-Key": key}
            )
    finally:
        with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def node(pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """Start the three services once per test module."""
    with running_node(pg_cluster, tmp_path_factory.mktemp("node")) as started:
        yield started


ASSETS_BUCKET = "csdr-assets"
ASSETS_URL = f"s3://{ASSETS_BUCKET}/node"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1 with the node's bucket, once per test module."""
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        server.create_bucket(ASSETS_BUCKET)
        yield server


@pytest.fixture(scope="module")
def s3_node(
    pg_cluster: Cluster, s3: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    """The three services with their assets in the S3 server's bucket (`ASSETS_URL`), and the
    catalog's transactions API on (deletes)."""
    env = {
        **s3.env,
        "CSDR_INGEST_ASSETS_URL": ASSETS_URL,
        "CSDR_CATALOG_TRANSACTIONS": "true",
        "CSDR_INGEST_REPLACED_GRACE_S": "5",  # test_reingest_and_delete_keep_the_bucket_in_step
    }
    with running_node(pg_cluster, tmp_path_factory.mktemp("s3node"), env) as started:
        yield started


@pytest.fixture(scope="module")
def push(
    node: Node, pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, str]]]:
    """The push service over the node's database (no delivery worker), and headers with a key
    of the read scope."""
    with psycopg.connect(pg_cluster.conninfo(node.env["PGDATABASE"]), autocommit=True) as conn:
        key = issue_key(conn, "E2E node", ["read"], "test")[0]
    env = {**node.env, "CSDR_PUSH_ALLOW_PRIVATE_TARGETS": "true", "CSDR_PUSH_WORKER": "false"}
    log_dir = tmp_path_factory.mktemp("push")
    with service("csdr_push.app:create_app", free_port(), env, log_dir) as url:
        yield url, {"X-API-Key": key}


@pytest.fixture(scope="module")
def federation(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The federation service over the node's database (no sync worker)."""
    env = {**node.env, "CSDR_FEDERATION_WORKER": "false"}
    log_dir = tmp_path_factory.mktemp("federation")
    with service("csdr_federation.app:create_app", free_port(), env, log_dir) as url:
        yield url


@pytest.fixture
def inbox_node(pg_cluster: Cluster, tmp_path: Path) -> Iterator[dict]:
    """An ingest service's environment with a fast-polling inbox, over a fresh database."""
    name = f"inbox_{uuid.uuid4().hex[:8]}"
    pg_cluster.create_database(name, template=TEMPLATE_DB)
    env = {
        **pg_cluster.env(name),
        "CSDR_INGEST_ASSETS_DIR": str(tmp_path / "assets"),
        "CSDR_INGEST_INBOX": str(tmp_path / "inbox"),
        "CSDR_INGEST_INBOX_STABLE_S": "0.5",
        "CSDR_INGEST_INBOX_POLL_S": "0.2",
        "CSDR_INGEST_POLL_INTERVAL_S": "0.2",
    }
    yield {"env": env, "base": tmp_path, "db": pg_cluster.conninfo(name)}
    with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def portal(
    node: Node, push: tuple[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The portal, pointing the browser at the node's catalog, tiler and push service."""
    env = {
        "CSDR_PORTAL_CATALOG_URL": node.catalog,
        "CSDR_PORTAL_TILER_URL": node.tiler,
        "CSDR_PORTAL_PUSH_URL": push[0],
    }
    log_dir = tmp_path_factory.mktemp("portal")
    with service("csdr_portal.app:create_app", free_port(), env, log_dir) as url:
        yield url
