"""Every service's checked-in OpenAPI document fuzzed against the running service by schemathesis,
with an admin key and with none: no 5xx, and every answer (status, content type, body, errors
included) is one the document declares. Seeded and deterministic: a failure reproduces."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from conftest import free_port
from csdr_access.admin import issue_key
from tests.e2e.processes import service

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance"
)
# Examples per operation and seconds per run: the tiler has ~130 operations, the others ~10-30.
BUDGET = {
    "catalog": (5, 45),
    "tiler": (3, 75),
    "ingest": (5, 20),
    "push": (5, 30),
    "orders": (5, 15),
    "discovery": (5, 30),
    "federation": (5, 20),
    "portal": (5, 10),
}


@pytest.fixture(scope="module")
def admin_key(node, pg_cluster) -> str:
    with psycopg.connect(pg_cluster.conninfo(node.env["PGDATABASE"]), autocommit=True) as conn:
        return issue_key(conn, "E2E node", ["admin"], "test")[0]


@pytest.fixture(scope="module")
def discovery(node, tmp_path_factory) -> Iterator[str]:
    """Discovery over the node's database, asking the node's catalog for granules."""
    port = free_port()
    env = {
        **node.env,
        "CSDR_DISCOVERY_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "CSDR_DISCOVERY_CATALOG_URL": node.catalog,
        "CSDR_DISCOVERY_TILER_URL": node.tiler,
    }
    logs = tmp_path_factory.mktemp("discovery")
    with service("csdr_discovery.app:create_app", port, env, logs) as url:
        yield url


@pytest.fixture(scope="module")
def orders(node, tmp_path_factory) -> Iterator[str]:
    """Orders over the node's database, serving the node's assets."""
    port = free_port()
    env = {
        **node.env,
        "CSDR_ORDERS_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "CSDR_ORDERS_CATALOG_URL": node.catalog,
        "CSDR_ORDERS_ASSET_ROOTS": str(node.assets_dir),
    }
    logs = tmp_path_factory.mktemp("orders")
    with service("csdr_orders.app:create_app", port, env, logs) as url:
        yield url


@pytest.mark.parametrize("principal", ["admin", "anonymous"])
@pytest.mark.parametrize("service", list(BUDGET))
def test_fuzzing_finds_no_5xx_and_only_documented_answers(
    node, push, orders, discovery, federation, portal, admin_key, service, principal, tmp_path
):
    urls = {
        "catalog": node.catalog,
        "tiler": node.tiler,
        "ingest": node.ingest,
        "push": push[0],
        "orders": orders,
        "discovery": discovery,
        "federation": federation,
        "portal": portal,
    }
    examples, seconds = BUDGET[service]
    if principal == "anonymous":
        seconds = max(seconds // 3, 15)
    command = [
        str(SCHEMATHESIS),
        "run",
        str(ROOT / "openapi" / f"{service}.json"),
        "--url",
        urls[service],
        "--checks",
        CHECKS,
        "--phases",
        "examples,fuzzing",
        "--max-examples",
        str(examples),
        "--max-time",
        str(seconds),
        "--seed",
        "20261202",
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--warnings",
        "off",
        "--no-color",
    ]
    if principal == "admin":
        command += ["--header", f"X-API-Key: {admin_key}"]
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 240, cwd=tmp_path
    )
    report = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, report
    assert "No issues found" in run.stdout, report
