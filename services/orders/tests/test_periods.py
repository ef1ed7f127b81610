"""Quota periods from an agreement's start date (`csdr-admin quota set --from`): an organisation
whose agreement starts on 1 April has years from 1 April to 31 March, for orders, downloads,
`GET /quota` and `csdr-admin quota show` alike, on an injected clock across the boundary."""

from datetime import UTC, date, datetime

from csdr_access.admin import set_policy
from csdr_access.cli import main
from csdr_access.periods import period_name, period_start, resets_at
from services.orders.tests.samples import auth, order_of


def test_periods_run_from_the_agreement_start_across_the_boundary(
    client, catalog, clock, db, scenes, keys, capsys
):
    set_policy(db, "gf1", "registered", [], "test")
    assert main(["quota", "set", "GISTDA", "2", "--from", "2025-04-01"]) == 0
    assert "years from 01 April" in capsys.readouterr().out
    th = auth(keys["thailand"])

    clock.now = datetime(2027, 3, 31, 23, 59, 59, tzinfo=UTC)
    late = client.post("/orders", json=order_of("S00", "S01"), headers=th)
    assert late.status_code == 201 and late.json()["period"] == "2026-04-01/2027-03-31"
    quota = client.get("/quota", headers=th).json()
    assert quota["period"] == "2026-04-01/2027-03-31"
    assert quota["resets_at"] == "2027-04-01T00:00:00Z"
    assert quota["quotas"][0]["remaining"] == 0
    refused = catalog.get("/collections/gf1/items/S02/assets/data", headers=th)
    assert refused.status_code == 403 and refused.json()["resets_at"] == "2027-04-01T00:00:00Z"
    # The other organisation keeps calendar years.
    other = client.get("/quota", headers=auth(keys["bangladesh"])).json()
    assert (other["period"], other["resets_at"]) == ("2027", "2028-01-01T00:00:00Z")

    clock.now = datetime(2027, 4, 1, 0, 0, 0, tzinfo=UTC)
    quota = client.get("/quota", headers=th).json()
    assert quota["period"] == "2027-04-01/2028-03-31"
    assert quota["resets_at"] == "2028-04-01T00:00:00Z"
    assert quota["quotas"][0]["remaining"] == 2
    assert catalog.get("/collections/gf1/items/S02/assets/data", headers=th).status_code == 200
    # S00, held in the last period, is charged again in this one.
    again = client.post("/orders", json=order_of("S00"), headers=th).json()
    assert again["items"][0]["charged"] is True
    assert client.get("/quota", headers=th).json()["quotas"][0]["remaining"] == 0

    assert main(["quota", "show", "GISTDA", "--year", "2026"]) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row == ["GISTDA", "all", "2026-04-01/2027-03-31", "2", "2", "0", "0"]
    assert main(["quota", "show", "GISTDA", "--year", "2027"]) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row == ["GISTDA", "all", "2027-04-01/2028-03-31", "2", "2", "0", "0"]

    # Without --year: the period holding now (the real clock's), by the agreement's dates.
    assert main(["quota", "show", "GISTDA"]) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    anchor = date(2025, 4, 1)
    assert row[2] == period_name(period_start(datetime.now(UTC), anchor), anchor)

    assert main(["quota", "set", "GISTDA", "2", "--calendar"]) == 0
    quota = client.get("/quota", headers=th).json()
    assert (quota["period"], quota["resets_at"]) == ("2027", "2028-01-01T00:00:00Z")


def test_an_agreement_from_29_february_runs_from_the_28th_in_other_years():
    anchor = date(2024, 2, 29)
    start = period_start(datetime(2027, 3, 1, tzinfo=UTC), anchor)
    assert start == date(2027, 2, 28)
    assert resets_at(start, anchor) == datetime(2028, 2, 29, tzinfo=UTC)
    assert period_name(start, anchor) == "2027-02-28/2028-02-28"
    assert period_start(datetime(2027, 2, 27, 23, 59, 59, tzinfo=UTC), anchor) == date(2026, 2, 28)
    assert period_start(datetime(2027, 2, 27, tzinfo=UTC)) == date(2027, 1, 1)
