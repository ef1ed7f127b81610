"""`/stats/usage` for a fixture year: rows sum to the totals for every measure, JSON and CSV carry
the same numbers, an organisation sees only its own rows, and canceled or failed items are not
`ordered` (`source` in its own right: test_source.py)."""

import csv
import io
import time

from services.orders.tests.samples import add_offline, auth, order_of

MEASURES = ("source", "ordered", "released", "downloaded")


def fixture_year(client, db, keys) -> None:
    th, bd = auth(keys["thailand"]), auth(keys["bangladesh"])
    add_offline(db, "OFF1", "/archive/OFF1.tar.gz")
    add_offline(db, "OFF2", "/archive/OFF2.tar.gz")
    delivered = client.post("/orders", json=order_of("S00", "S01"), headers=th).json()
    href = client.get(f"/orders/{delivered['id']}/items", headers=th).json()["features"][0][
        "assets"
    ]["data"]["href"]
    assert client.get(href.replace("http://127.0.0.1:8085", "")).status_code == 200
    assert client.post("/orders", json=order_of("S00", "S02"), headers=bd).status_code == 201
    canceled = client.post("/orders", json=order_of("OFF1"), headers=th).json()
    assert client.post(f"/orders/{canceled['id']}/cancel", headers=th).status_code == 200
    failing = client.post("/orders", json=order_of("OFF2"), headers=bd).json()
    db.execute(
        "UPDATE csdr.ingest_jobs SET status = 'failed', finished_at = now(),"
        ' error = \'{"code": "RpcMissing", "description": "no RPC"}\''
        " WHERE options->>'production' = 'OFF2'"
    )
    deadline = time.monotonic() + 20
    while client.get(f"/orders/{failing['id']}", headers=bd).json()["status"] != "failed":
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_usage_rows_sum_to_totals_and_orgs_see_their_own(make_client, db, scenes, keys):
    client = make_client(worker=True)
    fixture_year(client, db, keys)
    admin = auth(keys["admin"])
    params = {"from": "2026-01-01", "to": "2027-01-01", "group_by": "country,platform,instrument"}
    report = client.get("/stats/usage", params=params, headers=admin).json()
    rows, totals = report["rows"], report["totals"]
    # source: the ten online and two archived scenes, all over Thailand.
    assert totals == {"source": 12, "ordered": 4, "released": 4, "downloaded": 1}
    for m in MEASURES:
        assert sum(r[m] for r in rows) == totals[m]
    by_country = {r["country"]: r for r in rows if r["instrument"] == "wfv"}
    assert (by_country["TH"]["ordered"], by_country["BD"]["ordered"]) == (2, 2)
    assert (by_country["TH"]["source"], by_country["BD"]["source"]) == (10, 0)
    # Canceled and failed items are not ordered; the archived scenes are in the catalogue.
    zero = dict.fromkeys(MEASURES, 0)
    assert [r for r in rows if r["instrument"] == "pms"] == [
        {"country": "BD", "platform": "gf-1", "instrument": "pms", **zero},
        {"country": "TH", "platform": "gf-1", "instrument": "pms", **zero, "source": 2},
    ]

    text = client.get("/stats/usage", params={**params, "format": "csv"}, headers=admin)
    assert text.headers["content-type"].startswith("text/csv")
    parsed = list(csv.DictReader(io.StringIO(text.text)))
    assert [{k: str(v) for k, v in r.items()} for r in rows] == parsed

    mine = client.get("/stats/usage", params=params, headers=auth(keys["thailand"])).json()
    assert {r["country"] for r in mine["rows"]} == {"TH"}
    assert mine["totals"] == {"source": 12, "ordered": 2, "released": 2, "downloaded": 1}
    assert [q["organisation"] for q in mine["quotas"]] == ["GISTDA"]
    assert mine["quotas"][0]["used"] == 2 and mine["quotas"][0]["remaining"] == 998
    assert {q["organisation"] for q in report["quotas"]} == {"GISTDA", "SPARRSO"}

    monthly = client.get(
        "/stats/usage", params={"group_by": "month,organisation"}, headers=admin
    ).json()
    # The ledger's rows fall in June; source counts scenes by their own datetime.
    assert {r["month"] for r in monthly["rows"] if r["ordered"]} == {"2026-06"}
    assert {(r["month"], r["organisation"]): r["source"] for r in monthly["rows"]} == {
        ("2026-03", "GISTDA"): 2,
        ("2026-05", "GISTDA"): 10,
        ("2026-06", "GISTDA"): 0,
        ("2026-06", "SPARRSO"): 0,
    }
    assert monthly["totals"] == totals

    # A range not of whole months is summed from the ledger itself: the same numbers (and no
    # source: the scenes were taken before it).
    odd = {**params, "from": "2026-05-31T23:00:00Z", "to": "2026-07-01T01:00:00+00:00"}
    unaligned = client.get("/stats/usage", params=odd, headers=admin).json()
    assert unaligned["rows"] == [{**r, "source": 0} for r in rows]
    assert unaligned["totals"] == {**totals, "source": 0}
    quarterly = client.get(
        "/stats/usage", params={"group_by": "quarter,class"}, headers=admin
    ).json()
    assert quarterly["rows"] == [
        {"quarter": "2026-Q1", "class": "all", **zero, "source": 2},
        {"quarter": "2026-Q2", "class": "all", **totals, "source": 10},
    ]

    empty = client.get(
        "/stats/usage", params={**params, "from": "2020-01-01", "to": "2021-01-01"}, headers=admin
    )
    assert (empty.json()["rows"], empty.json()["totals"]) == ([], dict.fromkeys(MEASURES, 0))

    other = client.get(
        "/stats/usage", params={"organisation": "SPARRSO"}, headers=auth(keys["thailand"])
    )
    assert other.status_code == 403
    bad = client.get("/stats/usage", params={"group_by": "planet"}, headers=admin)
    assert bad.status_code == 400 and "group_by: planet" in bad.json()["description"]
    backwards = client.get(
        "/stats/usage", params={"from": "2027-01-01", "to": "2026-01-01"}, headers=admin
    )
    assert backwards.status_code == 400


def test_public_summary_per_country_when_switched_on(make_client, db, scenes, keys):
    client = make_client(public_summary=True)
    client.post("/orders", json=order_of("S00", "S01"), headers=auth(keys["thailand"]))
    client.post("/orders", json=order_of("S00"), headers=auth(keys["bangladesh"]))
    rows = client.get("/stats/summary", params={"year": 2026}).json()["rows"]
    assert rows == [
        {"country": "BD", "year": "2026", "ordered": 1, "released": 1, "downloaded": 0},
        {"country": "TH", "year": "2026", "ordered": 2, "released": 2, "downloaded": 0},
    ]
    assert client.get("/stats/summary", params={"year": 2025}).json() == {"rows": []}
    closed = make_client()
    assert closed.get("/stats/summary").status_code == 404
