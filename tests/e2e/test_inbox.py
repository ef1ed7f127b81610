"""Inbox end to end: packages dropped into the ingest service's inbox become searchable items;
a corrupt one is quarantined with its reason; a restart ingests nothing twice."""

from __future__ import annotations

import json
import time
from contextlib import ExitStack

import psycopg
import pytest
from pystac_client import Client

from conftest import free_port
from tests.e2e.inbox import drop, wait_for
from tests.e2e.processes import service
from tests.fixtures import CRESDA_PMS as PMS
from tests.fixtures import CRESDA_WFV as WFV
from tests.support.lookalike import write_lookalike


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
