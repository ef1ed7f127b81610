import psycopg
import pytest

from csdr_ingest.cli import main

pytestmark = pytest.mark.slow  # seconds per test (scenes, apps): make test, not test-fast


def test_cli_ingests_a_directory_and_reports_failures(pg_env, scene, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CSDR_INGEST_ASSETS_DIR", str(tmp_path / "assets"))
    assert main([str(scene.parent), "--collection", "cli"]) == 0
    with psycopg.connect() as conn:
        assert conn.execute("SELECT id FROM pgstac.items").fetchall() == [("small_scene",)]
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00garbage")
    assert main([str(scene), str(broken)]) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "broken.tif" in err and "1 published, 1 failed" in err


def test_cli_without_database_exits_2(monkeypatch, scene, capsys):
    monkeypatch.setenv("PGHOST", "127.0.0.1")
    monkeypatch.setenv("PGPORT", "1")
    assert main([str(scene)]) == 2
    assert "cannot reach the database" in capsys.readouterr().err
