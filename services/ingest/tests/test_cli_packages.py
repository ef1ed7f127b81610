import psycopg

from csdr_ingest.cli import main
from tests.fixtures import CRESDA_GF2, CRESDA_WFV
from tests.support.lookalike import write_lookalike


def test_cli_ingests_packages_in_a_directory_and_names_the_missing_rpb(
    pg_env, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("CSDR_INGEST_ASSETS_DIR", str(tmp_path / "assets"))
    inbox = tmp_path / "drop"
    write_lookalike(CRESDA_WFV, inbox, 300)
    write_lookalike(CRESDA_GF2, inbox, 300)
    assert main([str(inbox)]) == 1
    err = capsys.readouterr().err
    assert "[RpcMissing]" in err and "-MSS2.rpb" in err and "1 published, 1 failed" in err
    with psycopg.connect() as conn:
        rows = conn.execute("SELECT collection, id FROM pgstac.items").fetchall()
    assert rows == [("gf1-wfv", "GF1_WFV3_20200523_L1A0004819525")]
