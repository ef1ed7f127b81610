import json
import subprocess
import sys

import psycopg
import pytest

from csdr_ingest.pipeline import Staging, remove_abandoned


@pytest.fixture
def conn(pg_env):
    with psycopg.connect(autocommit=True) as c:
        yield c


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_files_of_a_writer_killed_mid_ingest_are_removed_on_restart(conn, settings):
    stage = Staging(settings, "gf1-wfv", "GF1_WFV3_20200523_L1A0004819525")
    stage.open()
    cog = stage.path(".tif", "data")
    cog.write_bytes(b"half a COG")
    tmp = cog.with_name(f".{cog.name}.1234abcd.tmp")
    tmp.write_bytes(b"temporary")
    other = stage.item_dir / "GF1_WFV3_20200523_L1A0004819525_deadbeef_data.tif"
    other.write_bytes(b"the published version")
    # The writer is alive: nothing is touched.
    assert remove_abandoned(conn, settings) == 0 and cog.exists()
    marker = settings.assets_dir / stage.marker
    info = json.loads(marker.read_text())
    marker.write_text(json.dumps({**info, "pid": dead_pid()}))
    assert remove_abandoned(conn, settings) == 1
    assert not cog.exists() and not tmp.exists() and not marker.exists()
    assert other.exists()  # another version's file is not this writer's
