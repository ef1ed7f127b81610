from pathlib import Path

import psycopg

from csdr_ingest.cli import main
from csdr_ingest.cresda.lookalike import write_lookalike

FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "cresda"


def test_cli_ingests_packages_in_a_directory_and_names_the_missing_rpb(
    pg_env, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("CSDR_INGEST_ASSETS_DIR", str(tmp_path / "assets"))
    inbox = tmp_path / "drop"
    write_lookalike(FIXTURES / "GF1_WFV3_E89.0_N23.9_20200523_L1A0004819525", inbox, 300)
    write_lookalike(FIXTURES / "GF2_PMS2_W72.3_S36.7_20230213_L1A2147483647", inbox, 300)
    assert main([str(inbox)]) == 1
    err = capsys.readouterr().err
    assert "[RpcMissing]" in err and "-MSS2.rpb" in err and "1 published, 1 failed" in err
    with psycopg.connect() as conn:
        rows = conn.execute("SELECT collection, id FROM pgstac.items").fetchall()
    assert rows == [("gf1-wfv", "GF1_WFV3_20200523_L1A0004819525")]
