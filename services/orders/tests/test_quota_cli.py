"""`csdr-admin quota set|show|class`: the limit the orders service then applies, the numbers it
counted, and clear refusals."""

from csdr_access.cli import main
from services.orders.tests.samples import auth, order_of


def test_quota_set_show_and_class(client, db, scenes, keys, capsys):
    assert main(["quota", "set", "GISTDA", "2"]) == 0
    assert "GISTDA may order 2 scenes" in capsys.readouterr().out
    th = auth(keys["thailand"])
    assert client.post("/orders", json=order_of("S00"), headers=th).status_code == 201
    assert main(["quota", "show", "GISTDA", "--year", "2026"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["org", "class", "period", "limit", "used", "reserved", "remaining"]
    assert lines[1].split() == ["GISTDA", "all", "2026", "2", "1", "0", "1"]
    assert main(["quota", "show", "SPARRSO"]) == 0
    assert "1000 (default)" in capsys.readouterr().out

    # A collection moved to its own class is counted there, with its own limit.
    assert main(["quota", "class", "gf1", "metre"]) == 0
    assert main(["quota", "set", "GISTDA", "0", "--class", "metre"]) == 0
    refused = client.post("/orders", json=order_of("S01"), headers=th)
    assert refused.status_code == 403 and refused.json()["class"] == "metre"

    assert main(["quota", "set", "Nobody", "5"]) == 1
    assert "no organisation named 'Nobody'" in capsys.readouterr().err
    assert main(["quota", "set", "GISTDA", "-1"]) == 1
    assert main(["quota", "class", "gf1", "Bad Class"]) == 1
