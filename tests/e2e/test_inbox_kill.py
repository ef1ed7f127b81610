"""kill -9 mid-ingest: the ingest service (a real uvicorn process) is SIGKILLed while it
orthorectifies a package from its inbox. Nothing is published, and after a restart the same job
runs again and publishes the item exactly once, leaving no orphaned file anywhere."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psycopg
import pytest

from conftest import free_port
from tests.e2e.inbox import drop, wait_for
from tests.e2e.processes import service
from tests.fixtures import CRESDA_WFV as WFV
from tests.support.lookalike import write_lookalike

ITEM = "GF1_WFV3_20200523_L1A0004819525"


def files(path: Path) -> set[Path]:
    return {p for p in path.rglob("*") if p.is_file()} if path.exists() else set()


def item_count(db: str) -> int:
    with psycopg.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM pgstac.items").fetchone()[0]


@pytest.mark.slow
def test_sigkill_mid_ingest_leaves_nothing_and_the_job_succeeds_once_after_restart(
    inbox_node,
):
    env, base, db = inbox_node["env"], inbox_node["base"], inbox_node["db"]
    work, assets = base / "work", base / "assets"
    env = {**env, "CSDR_INGEST_WORK_DIR": str(work)}
    inbox = base / "inbox"
    inbox.mkdir()
    # Big enough that orthorectification and COG writing take seconds.
    package = write_lookalike(WFV, base / "staging", max_size=4000)
    pending = assets / ".pending"
    port = free_port()

    with service("csdr_ingest.app:create_app", port, env, base):
        drop(package, inbox)
        wait_for(lambda: any(pending.glob("*.json")), 240, "the ingest to start writing")
        marker = next(pending.glob("*.json"))
        writer = json.loads(marker.read_text())["pid"]
        time.sleep(1.0)  # well into the warp: scratch files exist, the item does not
        assert item_count(db) == 0, "the ingest finished before the kill: use a bigger package"
        assert any(work.iterdir()), "nothing unpacked yet"
        os.kill(writer, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(writer, 0)
            except ProcessLookupError:
                break
            if Path(f"/proc/{writer}/stat").read_text().split()[2] == "Z":
                break  # dead, not yet reaped by the test's Popen
            time.sleep(0.1)

    # Killed: no item, the job still says running, its files are still there.
    assert item_count(db) == 0
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT status FROM csdr.ingest_jobs").fetchall() == [("running",)]
    assert marker.exists() and any(work.iterdir())

    with service("csdr_ingest.app:create_app", port, env, base):
        wait_for(lambda: any((base / "archive").glob("*")), 300, "the retried job to finish")
        with psycopg.connect(db) as conn:
            jobs = conn.execute("SELECT status, error FROM csdr.ingest_jobs").fetchall()
            items = conn.execute("SELECT id, collection FROM pgstac.items").fetchall()
            [[assets_doc]] = conn.execute(
                "SELECT pgstac.get_item(%s, %s)->'assets'", items[0]
            ).fetchall()
    assert jobs == [("succeeded", None)]  # the same job, retried, once
    assert [i[0] for i in items] == [ITEM]
    # Exactly the item's files: none of the killed version, no marker left.
    hrefs = {Path(a["href"]) for a in assets_doc.values()}
    assert files(assets) == hrefs
    assert list(work.iterdir()) == [], "scratch of the killed process is left"
    assert list(inbox.iterdir()) == []
