"""Migration 0015 renames platforms, constellations and instruments of items and collections
already in a real pgSTAC catalogue; the catalog's searches by the new names then find them."""

import psycopg
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from csdr_catalog.app import create_app
from csdr_catalog.settings import Settings
from infra.db.migrate import MIGRATIONS_DIR, migrate
from tests.support.items import stac_item

MIGRATION = "0015_platform_vocabulary.sql"
CREATED = "2024-01-01T00:00:00Z"


def collection(cid: str, summaries: dict) -> dict:
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": cid,
        "description": cid,
        "license": "other",
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [[None, None]]},
        },
        "summaries": summaries,
        "links": [],
    }


def item(cid: str, item_id: str, when: str, props: dict) -> dict:
    properties = {"datetime": when, "created": CREATED, "updated": CREATED, **props}
    assets = {"data": {"href": f"/srv/{item_id}.tif", "roles": ["data"]}}
    return stac_item(item_id, cid, (47.2, -14.3, 48.5, -13.1), properties, assets)


# (collection, id, acquisition time, properties as an older ingest wrote them, as they must be)
OLD_ITEMS = [
    (
        "cb04-mux",
        "CB04_MUX_20151023_L20000019603",
        "2015-10-23T07:14:07Z",
        {"platform": "cb04", "constellation": "cb", "instruments": ["MUX"]},
        {"platform": "cbers-4", "constellation": "cbers", "instruments": ["mux"]},
    ),
    (
        "gf2-pms",
        "GF2_PMS2_20230213_L1A12889847001",
        "2023-02-13T14:17:10Z",
        {"platform": "gf2", "constellation": "gf", "instruments": ["PMS"]},
        {"platform": "gf-2", "constellation": "gaofen", "instruments": ["pms"]},
    ),
    (
        "gf2-pms",
        "GF2_PMS1_20200510_L1A0004793969",
        "2020-05-10T17:03:20Z",
        {"platform": "GF-2"},
        {"platform": "gf-2", "constellation": "gaofen"},
    ),
    (
        "hj1a-ccd",
        "HJ1A_CCD2_20121204_L20000902055",
        "2012-12-04T02:53:16Z",
        {"platform": "hj-1a", "constellation": "hj-1", "instruments": ["ccd"]},
        {"platform": "hj-1a", "constellation": "huanjing", "instruments": ["ccd"]},
    ),
    (
        "zy3-nad",
        "ZY3_NAD_20160930_SC1610033562",
        "2016-09-30T05:57:10Z",
        {"platform": "zy-3", "constellation": "ziyuan", "instruments": ["nad"]},
        {"platform": "zy-3-01", "constellation": "ziyuan", "instruments": ["nad"]},
    ),
]
# Already in the vocabulary, or not ours to rename: left exactly as they were.
KEPT_ITEMS = [
    (
        "gf2-pms",
        "GF2_PMS2_20240512",
        "2024-05-12T03:21:45Z",
        {"platform": "gf-2", "constellation": "gaofen", "instruments": ["pms"]},
    ),
    ("uploads", "sentinel_scene", "2024-03-01T10:00:00Z", {"platform": "sentinel-2a"}),
]
OLD_COLLECTIONS = {
    "cb04-mux": {"platform": ["cb04"], "constellation": ["cb"], "instruments": ["MUX"]},
    "gf2-pms": {"platform": ["gf2", "gf-2"], "constellation": ["gf"], "instruments": ["pms"]},
    "hj1a-ccd": {"platform": ["hj-1a"], "constellation": ["hj-1"], "instruments": ["ccd"]},
    "zy3-nad": {"platform": ["zy-3"], "constellation": ["ziyuan"], "instruments": ["nad"]},
    "uploads": {"platform": ["sentinel-2a"]},
}


def load_old_catalogue(conn: psycopg.Connection) -> None:
    for cid, summaries in OLD_COLLECTIONS.items():
        conn.execute("SELECT pgstac.create_collection(%s)", (Jsonb(collection(cid, summaries)),))
    items = [item(c, i, w, p) for c, i, w, p, _ in OLD_ITEMS]
    items += [item(c, i, w, p) for c, i, w, p in KEPT_ITEMS]
    conn.execute("SELECT pgstac.create_items(%s)", (Jsonb(items),))


def stored(conn: psycopg.Connection, cid: str, item_id: str) -> dict:
    return conn.execute("SELECT pgstac.get_item(%s, %s)", (item_id, cid)).fetchone()[0]


def test_migration_renames_old_items_in_place_and_searches_find_them(pg_env):
    assert (MIGRATIONS_DIR / MIGRATION).is_file()
    with psycopg.connect(autocommit=True) as conn:
        load_old_catalogue(conn)
        kept_before = {i: stored(conn, c, i) for c, i, _, _ in KEPT_ITEMS}
        events_before = conn.execute("SELECT count(*) FROM csdr.item_events").fetchone()[0]
        # The template database ran 0015 before these items existed: run it again over them.
        conn.execute("DELETE FROM csdr.schema_migrations WHERE name = %s", (MIGRATION,))
    migrate()
    with psycopg.connect(autocommit=True) as conn:
        for cid, item_id, when, _, expected in OLD_ITEMS:
            props = stored(conn, cid, item_id)["properties"]
            assert {k: props.get(k) for k in expected} == expected, item_id
            assert props["datetime"] == when and props["updated"] > CREATED
        for cid, item_id, _, _ in KEPT_ITEMS:
            assert stored(conn, cid, item_id) == kept_before[item_id]
        # One `updated` event per renamed item, for mirrors and subscribers.
        events = conn.execute(
            "SELECT type, item_id FROM csdr.item_events ORDER BY id OFFSET %s", (events_before,)
        ).fetchall()
        assert sorted(events) == sorted(("updated", i) for _, i, _, _, _ in OLD_ITEMS)
        summaries = {
            cid: conn.execute("SELECT pgstac.get_collection(%s)", (cid,)).fetchone()[0]["summaries"]
            for cid in OLD_COLLECTIONS
        }
        # Running the migration's SQL a second time changes nothing.
        with conn.transaction():
            conn.execute((MIGRATIONS_DIR / MIGRATION).read_text())
        again = conn.execute("SELECT count(*) FROM csdr.item_events").fetchone()[0]
        assert again == events_before + len(OLD_ITEMS)
    assert summaries["cb04-mux"] == {
        "platform": ["cbers-4"],
        "constellation": ["cbers"],
        "instruments": ["mux"],
    }
    assert summaries["gf2-pms"]["platform"] == ["gf-2"]
    assert summaries["gf2-pms"]["constellation"] == ["gaofen"]
    assert summaries["hj1a-ccd"]["constellation"] == ["huanjing"]
    assert summaries["zy3-nad"]["platform"] == ["zy-3-01"]
    assert summaries["uploads"] == {"platform": ["sentinel-2a"]}

    with TestClient(create_app(Settings())) as client:
        found = client.get(
            "/search", params={"filter": "platform = 'cbers-4'", "filter-lang": "cql2-text"}
        )
        assert found.status_code == 200, found.text
        assert [f["id"] for f in found.json()["features"]] == ["CB04_MUX_20151023_L20000019603"]
        gaofen = client.post(
            "/search",
            json={
                "filter": {
                    "op": "and",
                    "args": [
                        {"op": "=", "args": [{"property": "constellation"}, "gaofen"]},
                        {"op": "a_contains", "args": [{"property": "instruments"}, ["pms"]]},
                    ],
                },
                "filter-lang": "cql2-json",
            },
        )
        assert gaofen.status_code == 200, gaofen.text
        assert {f["id"] for f in gaofen.json()["features"]} == {
            "GF2_PMS2_20230213_L1A12889847001",
            "GF2_PMS2_20240512",
        }
        old_name = client.get(
            "/search", params={"filter": "platform = 'cb04'", "filter-lang": "cql2-text"}
        )
        assert old_name.json()["features"] == []
