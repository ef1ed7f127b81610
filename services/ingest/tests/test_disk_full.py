"""A disk that fills up during an ingest: the job fails naming the full disk, nothing is
published, and what the job wrote (versioned files, scratch) is gone. The assets and scratch
directories are a 2 MB tmpfs mounted by the test (the test machines run as root)."""

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from csdr_ingest.jobs import run_pipeline
from csdr_ingest.settings import Settings
from csdr_ingest.synthetic import DEMO_SCENES, write_scene


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB filesystem of its own."""
    disk = tmp_path / "small"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:  # not root, or a container without CAP_SYS_ADMIN
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()]


def test_a_full_disk_fails_the_job_by_name_and_leaves_nothing(pg_env, tmp_path, small_disk):
    source = write_scene(DEMO_SCENES[0], tmp_path)  # ~ several MB: it cannot fit
    settings = Settings(assets_dir=small_disk / "assets", work_dir=small_disk / "scratch")
    (small_disk / "scratch").mkdir()
    job = {"id": uuid.uuid4(), "source": str(source), "collection": "full", "options": {}}
    with ConnectionPool(min_size=1, max_size=2, kwargs={"autocommit": True}) as pool:
        items, error = run_pipeline(pool, job, settings)
    assert items == [] and error is not None
    assert error["code"] == "DiskFull", error
    assert str(small_disk / "assets") in error["description"]
    assert files_under(small_disk) == [], files_under(small_disk)
    with psycopg.connect(autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pgstac.items").fetchone()[0] == 0
        assert conn.execute("SELECT to_regclass('pgstac.collections')").fetchone()[0]
        assert conn.execute("SELECT count(*) FROM pgstac.collections").fetchone()[0] == 0
