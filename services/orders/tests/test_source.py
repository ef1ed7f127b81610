"""`source` in /stats/usage: the catalogue's scenes over an organisation's area (its country's from
Natural Earth, or its own set with `csdr-admin org area`) in the collections it may see, by the
scenes' own datetime; counted once per country, or per organisation in a report per organisation;
rows add up to the totals, JSON and CSV agree, an organisation sees only its own."""

import csv
import io
import json
from typing import Any

import pytest
from psycopg.types.json import Jsonb

from csdr_access.admin import add_org, issue_key, set_policy
from csdr_access.cli import main
from services.orders.tests.samples import COLLECTION, auth
from tests.support.items import square, stac_item

MEASURES = ("source", "ordered", "released", "downloaded")
VIENTIANE, BANGKOK, CHIANG_MAI, DHAKA = (102.6, 17.95), (100.5, 13.7), (98.95, 18.8), (90.4, 23.8)
BORDER = (102.55, 17.85)  # the Mekong at Vientiane: a 0.2 degree scene over Laos and Thailand


def scene(item_id: str, where: tuple[float, float], when: str, collection: str = "gf1",
          platform: str = "gf-1", size: float = 0.05) -> dict[str, Any]:  # fmt: skip
    properties = {"datetime": when, "platform": platform, "instruments": ["wfv"]}
    return stac_item(item_id, collection, square(*where, size), properties)


@pytest.fixture
def node(db, keys):
    """Scenes over Laos, Thailand and Bangladesh in `gf1` (public) and `gf6` (partners: GISTDA
    only), a second Thai organisation and a Lao one."""
    db.execute("SELECT pgstac.create_collection(%s)", (Jsonb({**COLLECTION, "id": "gf6"}),))
    set_policy(db, "gf6", "partners", ["GISTDA"], "test")
    items = [
        scene("LA1", VIENTIANE, "2026-02-10T03:00:00Z"),
        scene("LA2", VIENTIANE, "2026-05-10T03:00:00Z", platform="gf-2"),
        scene("TH1", BANGKOK, "2026-02-11T03:00:00Z"),
        scene("TH2", CHIANG_MAI, "2026-05-11T03:00:00Z"),
        scene("TH3", BANGKOK, "2025-12-31T23:59:59Z"),  # before the report's year
        scene("BD1", DHAKA, "2026-03-01T03:00:00Z"),
        scene("XB1", BORDER, "2026-03-02T03:00:00Z", size=0.2),
        scene("TH6", BANGKOK, "2026-04-01T03:00:00Z", collection="gf6"),
        scene("CN1", (100.0, 25.0), "2026-06-01T03:00:00Z", size=10),  # over many of CN's pieces
        scene("LA6", VIENTIANE, "2026-04-02T03:00:00Z", collection="gf6"),
    ]
    for item in items:
        db.execute("SELECT pgstac.upsert_item(%s)", (Jsonb(item),))
    extra = {}
    for org, country in (("TH-Forest", "TH"), ("LAO-DMH", "LA")):
        add_org(db, org, country, "agency", "test")
        extra[org] = issue_key(db, org, ["read"], "test")[0]
    return {**keys, **extra}


YEAR = {"from": "2026-01-01", "to": "2027-01-01"}


def report(client, key: str, group_by: str, **params: str) -> dict[str, Any]:
    r = client.get(
        "/stats/usage", params={**YEAR, "group_by": group_by, **params}, headers=auth(key)
    )
    assert r.status_code == 200, r.text
    body = r.json()
    for m in MEASURES:
        assert sum(row[m] for row in body["rows"]) == body["totals"][m], m
    return body


def sources(body: dict[str, Any], key: str) -> dict[str, int]:
    return {row[key]: row["source"] for row in body["rows"] if row["source"]}


def test_source_per_country_and_organisation(client, node, db):
    admin = node["admin"]
    # China's area is searched in pieces (csdr.area_parts): CN1 meets several, and counts once.
    pieces = db.execute(
        "SELECT count(*) FROM csdr.area_parts WHERE area = 'country:CN'"
        " AND ST_Intersects(geom, ST_MakeEnvelope(100, 25, 110, 35, 4326))"
    ).fetchone()[0]
    assert pieces > 1
    by_country = report(client, admin, "country")
    # Thailand: TH1, TH2, the border scene, and TH6 (gf6, seen by GISTDA), each once although two
    # Thai organisations see most of them; TH3 is of 2025. Laos: LA1, LA2, XB1 (not LA6: no Lao
    # organisation may see gf6). China's area holds none of them.
    assert sources(by_country, "country") == {"TH": 4, "LA": 3, "BD": 1, "CN": 1}
    assert by_country["totals"]["source"] == 9  # the border scene counts for both countries

    by_org = report(client, admin, "organisation")
    assert sources(by_org, "organisation") == {
        "GISTDA": 4,
        "TH-Forest": 3,  # not TH6: gf6 is hidden from it
        "LAO-DMH": 3,
        "SPARRSO": 1,
        "CRESDA": 1,
    }
    assert by_org["totals"]["source"] == 12

    # An organisation's own report: its rows only, its area, what it may see.
    mine = report(client, node["TH-Forest"], "country,platform,month")
    assert [(r["country"], r["platform"], r["month"], r["source"]) for r in mine["rows"]] == [
        ("TH", "gf-1", "2026-02", 1),
        ("TH", "gf-1", "2026-03", 1),
        ("TH", "gf-1", "2026-05", 1),
    ]
    lao = report(client, node["LAO-DMH"], "platform,collection,class")
    assert [(r["platform"], r["collection"], r["class"], r["source"]) for r in lao["rows"]] == [
        ("gf-1", "gf1", "all", 2),
        ("gf-2", "gf1", "all", 1),
    ]

    # JSON and CSV agree, source included.
    params = {**YEAR, "group_by": "country,collection,quarter", "format": "csv"}
    text = client.get("/stats/usage", params=params, headers=auth(admin)).text
    rows = report(client, admin, "country,collection,quarter")["rows"]
    assert list(csv.DictReader(io.StringIO(text))) == [
        {k: str(v) for k, v in r.items()} for r in rows
    ]
    assert next(csv.reader(io.StringIO(text)))[-4:] == list(MEASURES)
    assert {(r["country"], r["collection"], r["quarter"]): r["source"] for r in rows} == {
        ("BD", "gf1", "2026-Q1"): 1,
        ("CN", "gf1", "2026-Q2"): 1,
        ("LA", "gf1", "2026-Q1"): 2,
        ("LA", "gf1", "2026-Q2"): 1,
        ("TH", "gf1", "2026-Q1"): 2,
        ("TH", "gf1", "2026-Q2"): 1,
        ("TH", "gf6", "2026-Q2"): 1,
    }

    # The range is the scenes' own datetime: 2025 holds TH3 alone.
    old = report(client, admin, "country", **{"from": "2025-01-01", "to": "2026-01-01"})
    assert sources(old, "country") == {"TH": 1}


def test_an_organisations_own_area_replaces_its_countrys(client, node, db, tmp_path, capsys):
    # A Mekong agreement: GISTDA counts the scenes over Laos, not over Thailand.
    laos = db.execute(
        "SELECT ST_AsGeoJSON(geom) FROM csdr.country_areas WHERE country = 'LA'"
    ).fetchone()[0]
    area = tmp_path / "mekong.geojson"
    area.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": json.loads(laos)}))
    assert main(["org", "area", "GISTDA", str(area), "--label", "Mekong agreement"]) == 0
    said = capsys.readouterr().out.splitlines()
    assert said[1].split()[:4] == ["GISTDA", "TH", "own", "Mekong"]

    gistda = report(client, node["thailand"], "organisation")
    assert sources(gistda, "organisation") == {"GISTDA": 4}  # LA1, LA2, XB1 and LA6 (gf6)
    by_country = report(client, node["admin"], "country")
    # Thailand's count is now over Thailand (TH-Forest: TH1, TH2, XB1) and Laos (GISTDA: LA1,
    # LA2, XB1, LA6), each scene once.
    assert sources(by_country, "country") == {"TH": 6, "LA": 3, "BD": 1, "CN": 1}

    assert main(["org", "area", "GISTDA", "--country"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[2] == "country"
    assert sources(report(client, node["thailand"], "organisation"), "organisation") == {
        "GISTDA": 4
    }
    assert sources(report(client, node["admin"], "country"), "country")["TH"] == 4
    assert main(["org", "area", "GISTDA"]) == 0
    assert "Thailand" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("document", "said"),
    [
        ({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, "not 'LineString'"),
        (
            {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
            "not a valid geometry: Self-intersection",
        ),
        (
            {"type": "Polygon", "coordinates": [[[0, 0], [500000, 0], [0, 500000], [0, 0]]]},
            "not longitude and latitude",
        ),
        ({"type": "FeatureCollection", "features": []}, "has no features"),
    ],
)
def test_an_area_that_is_not_one_is_refused(db, keys, tmp_path, capsys, document, said):
    area = tmp_path / "area.geojson"
    area.write_text(json.dumps(document))
    assert main(["org", "area", "GISTDA", str(area)]) == 1
    assert said in capsys.readouterr().err
    assert db.execute("SELECT count(*) FROM csdr.organisation_areas").fetchone() == (0,)
