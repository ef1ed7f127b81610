"""`csdr-admin peer add|list|pause|resume|remove`: the peers the federation worker mirrors."""

import psycopg
import pytest

from csdr_access.cli import main


@pytest.fixture
def conn(pg_env):
    with psycopg.connect(autocommit=True) as c:
        yield c


def test_peer_round_trip(conn, capsys):
    args = ["peer", "add", "main", "https://lasac.example:8087/", "--key", "csdr_abcd1234_s3cret"]
    selection = ["--collections", "gf1,gf2", "--bbox", "100,10,110,25", "--max-cloud", "20"]
    assert main([*args, *selection, "--since", "2024-01-01", "--assets", "copy"]) == 0
    row = conn.execute(
        "SELECT url, api_key, collections, bbox, max_cloud, since::date::text, assets, status"
        " FROM csdr.federation_peers WHERE name = 'main'"
    ).fetchone()
    assert row == (
        "https://lasac.example:8087",
        "csdr_abcd1234_s3cret",
        ["gf1", "gf2"],
        [100.0, 10.0, 110.0, 25.0],
        20.0,
        "2024-01-01",
        "copy",
        "active",
    )
    capsys.readouterr()
    assert main(["peer", "list"]) == 0
    listing = capsys.readouterr().out
    assert "main" in listing and "gf1,gf2" in listing and "s3cret" not in listing
    assert main(["peer", "pause", "main"]) == 0
    assert conn.execute("SELECT status FROM csdr.federation_peers").fetchone() == ("paused",)
    assert main(["peer", "resume", "main"]) == 0
    assert conn.execute("SELECT status FROM csdr.federation_peers").fetchone() == ("active",)
    audit = [r[0] for r in conn.execute("SELECT action FROM csdr.audit_log ORDER BY id")]
    assert audit == ["peer.add", "peer.pause", "peer.resume"]
    assert "s3cret" not in str(conn.execute("SELECT detail FROM csdr.audit_log").fetchall())
    assert main(["peer", "remove", "main"]) == 0
    assert main(["peer", "remove", "main"]) == 1
    assert "no peer named 'main'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--bbox", "1,2,3"], "--bbox"),
        (["--bbox", "0,0,1,1", "--intersects", '{"type":"Point","coordinates":[0,0]}'], "not both"),
        (["--intersects", "{nope"], "--intersects"),
        (["--max-cloud", "150"], "--max-cloud"),
    ],
)
def test_peer_add_refuses_what_makes_no_sense(pg_env, capsys, extra, message):
    assert main(["peer", "add", "main", "https://x.example", "--key", "k", *extra]) == 1
    assert message in capsys.readouterr().err


def test_peer_names_and_urls_are_checked(pg_env, capsys):
    assert main(["peer", "add", "Main Node", "https://x.example", "--key", "k"]) == 1
    assert "peer name" in capsys.readouterr().err
    assert main(["peer", "add", "main", "ftp://x.example", "--key", "k"]) == 1
    assert "not an http(s) URL" in capsys.readouterr().err
    assert main(["peer", "add", "main", "https://x.example", "--key", "k"]) == 0
    assert main(["peer", "add", "main", "https://y.example", "--key", "k"]) == 1
    assert "exists already" in capsys.readouterr().err
