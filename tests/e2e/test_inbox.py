"""Inbox end to end: packages dropped into the ingest service's inbox become searchable items;
a corrupt one is quarantined with its reason; a restart ingests nothing twice."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest
from pystac_client import Client

from conftest import TEMPLATE_DB, free_port
from csdr_ingest.cresda.lookalike import write_lookalike
from infra.local.pgcluster import Cluster
from tests.e2e.processes import service

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "cresda"
WFV = FIXTURES / "GF1_WFV3_E89.0_N23.9_20200523_L1A0004819525"
PMS = FIXTURES / "GF1_PMS1_E69.4_N33.3_20220624_L1A0006547030"


@pytest.fixture
def inbox_node(pg_cluster: Cluster, tmp_path: Path) -> Iterator[dict]:
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


def wait_for(check, timeout_s: float = 240, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.3)


def drop(src: Path, inbox: Path) -> None:
    """Put a package into the inbox the way an operator's copy would finish: a rename."""
    hidden = inbox / f".{src.name}"
    shutil.move(str(src), hidden)
    hidden.rename(inbox / src.name)


@pytest.mark.slow
def test_three_packages_one_corrupt_then_restart(inbox_node):
    env, base = inbox_node["env"], inbox_node["base"]
    inbox, archive, quarantine = base / "inbox", base / "archive", base / "quarantine"
    inbox.mkdir()
    staging = base / "staging"
    wfv = write_lookalike(WFV, staging, max_size=400)
    pms = write_lookalike(PMS, staging, max_size=400, archive=None)
    corrupt = staging / "GF1_WFV4_E99.9_N15.2_20181123_L1A0003618710.tar.gz"
    corrupt.write_bytes(wfv.read_bytes()[:20000])

    with ExitStack() as stack:
        catalog = stack.enter_context(
            service("csdr_catalog.app:create_app", free_port(), env, base)
        )
        ingest_port = free_port()
        with service("csdr_ingest.app:create_app", ingest_port, env, base):
            for package in (wfv, pms, corrupt):
                drop(package, inbox)
            wait_for(
                lambda: (
                    len(list(archive.glob("*"))) == 2
                    and len(list(quarantine.glob("*.error.json"))) == 1
                ),
                what="two packages archived and one quarantined",
            )
        assert list(inbox.iterdir()) == []
        report = json.loads(next(quarantine.glob("*.error.json")).read_text())
        assert report["package"] == corrupt.name and report["code"] == "PackageInvalid"
        assert "damaged or truncated" in report["reason"]
        assert (quarantine / corrupt.name).is_file()

        client = Client.open(catalog)
        items = {i.id: i for i in client.search(bbox=[60, 20, 95, 40]).items()}
        assert set(items) == {"GF1_WFV3_20200523_L1A0004819525", "GF1_PMS1_20220624_L1A0006547030"}
        assert str(items["GF1_WFV3_20200523_L1A0004819525"].datetime) == "2020-05-23 05:03:08+00:00"
        with psycopg.connect(inbox_node["db"]) as conn:
            jobs_before = conn.execute("SELECT count(*) FROM csdr.ingest_jobs").fetchone()[0]
            updated_before = conn.execute(
                "SELECT id, content->'properties'->>'updated' FROM pgstac.items ORDER BY id"
            ).fetchall()
        assert jobs_before == 3

        # Restart: same inbox, same database. Nothing is queued or ingested again.
        with service("csdr_ingest.app:create_app", ingest_port, env, base):
            time.sleep(3)
        with psycopg.connect(inbox_node["db"]) as conn:
            assert conn.execute("SELECT count(*) FROM csdr.ingest_jobs").fetchone()[0] == 3
            assert (
                conn.execute(
                    "SELECT id, content->'properties'->>'updated' FROM pgstac.items ORDER BY id"
                ).fetchall()
                == updated_before
            )
