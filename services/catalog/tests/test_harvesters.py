"""The STAC API paged the way GEO DAB's STAC accessor pages it: `/collections` once, then
`/search?collections=..&limit=..&bbox=..&datetime=YYYY-MM-DD/YYYY-MM-DD`, the count from
`numberMatched`, pages by the 0-based offset `_o` (what DAB's STACGranulesBondHandler sends) or
by the `next` link. Date-only interval ends are whole UTC days."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from conftest import TEMPLATE_DB
from csdr_catalog.app import create_app
from csdr_catalog.settings import Settings
from infra.local.pgcluster import Cluster
from tests.e2e import catalog_scenes

CHINA = "74,18,134,53"
EMPTY = 9  # collections without items, beside the four sensors'


@pytest.fixture(scope="module")
def harvested(pg_cluster: Cluster) -> Iterator[tuple[TestClient, psycopg.Connection]]:
    """400 synthetic scenes over four collections, the catalog, and a connection to count."""
    name = f"dab_{uuid.uuid4().hex[:10]}"
    pg_cluster.create_database(name, template=TEMPLATE_DB)
    env = pg_cluster.env(name)
    catalog_scenes.load(env, 400)
    with psycopg.connect(pg_cluster.conninfo(name), autocommit=True) as conn:
        # More collections than pgSTAC's default page of 10: DAB reads /collections once.
        for n in range(EMPTY):
            copy = {**catalog_scenes.collection(catalog_scenes.SENSORS[0]), "id": f"empty-{n:02d}"}
            conn.execute("SELECT pgstac.create_collection(%s)", (Jsonb(copy),))
    with (
        pytest.MonkeyPatch.context() as mp,
        psycopg.connect(pg_cluster.conninfo(name), autocommit=True) as conn,
    ):
        for key, value in env.items():
            mp.setenv(key, value)
        with TestClient(create_app(Settings()), raise_server_exceptions=False) as client:
            yield client, conn
    with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sql_ids(conn: psycopg.Connection, collection: str, start: str, end: str) -> set[str]:
    rows = conn.execute(
        "SELECT id FROM pgstac.items WHERE collection = %s AND datetime >= %s AND datetime < %s",
        (collection, start, end),
    ).fetchall()
    return {r[0] for r in rows}


def harvest(client: TestClient, params: dict[str, Any]) -> tuple[list[str], int]:
    """Every id of a search, page by page through `next`, and the first page's numberMatched."""
    r = client.get("/search", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    matched = body["numberMatched"]
    ids = [f["id"] for f in body["features"]]
    while nxt := next((link for link in body["links"] if link["rel"] == "next"), None):
        body = client.get(nxt["href"]).json()
        assert body["numberMatched"] == matched
        ids += [f["id"] for f in body["features"]]
    return ids, matched


def test_dab_style_harvest_collects_every_item_once(
    harvested: tuple[TestClient, psycopg.Connection],
) -> None:
    client, conn = harvested
    collections = client.get("/collections").json()["collections"]  # read once, no paging
    assert len(collections) == len(catalog_scenes.SENSORS) + EMPTY
    for collection in collections:
        ids, matched = harvest(
            client,
            {
                "collections": collection["id"],
                "limit": 7,
                "bbox": CHINA,
                "datetime": "2021-01-01/2021-12-31",
                "clientId": "geodab",  # unknown: ignored
            },
        )
        expected = sql_ids(conn, collection["id"], "2021-01-01T00:00:00Z", "2022-01-01T00:00:00Z")
        assert len(ids) == len(set(ids)) == matched
        assert set(ids) == expected
        assert expected or collection["id"].startswith("empty-")


def test_dab_offset_paging_collects_every_item_once(
    harvested: tuple[TestClient, psycopg.Connection],
) -> None:
    client, conn = harvested
    collection = catalog_scenes.collection(catalog_scenes.SENSORS[0])["id"]
    query = {"collections": collection, "bbox": CHINA, "datetime": "2021-01-01/2021-12-31"}
    # DAB's count: numberMatched of `_o=0&limit=1`; then pages of n at `_o=<start-1>`.
    count = client.get("/search", params={**query, "_o": 0, "limit": 1}).json()["numberMatched"]
    expected = sql_ids(conn, collection, "2021-01-01T00:00:00Z", "2022-01-01T00:00:00Z")
    assert count == len(expected) > 14
    ids: list[str] = []
    for start in range(0, count, 5):
        r = client.get("/search", params={**query, "_o": start, "limit": 5, "clientId": "geodab"})
        assert r.status_code == 200, r.text
        assert r.json()["numberMatched"] == count
        ids += [f["id"] for f in r.json()["features"]]
    assert len(ids) == len(set(ids)) == count and set(ids) == expected
    assert client.get("/search", params={**query, "_o": count}).json()["features"] == []

    # The same offset by POST and on the items page; an offset page's `next` link goes on.
    box = [float(v) for v in CHINA.split(",")]
    by_post = client.post(
        "/search", json={**query, "collections": [collection], "bbox": box, "_o": 7, "limit": 7}
    ).json()
    assert [f["id"] for f in by_post["features"]] == ids[7:14]
    items = client.get(
        f"/collections/{collection}/items",
        params={"datetime": query["datetime"], "bbox": CHINA, "_o": 7, "limit": 7},
    ).json()
    assert [f["id"] for f in items["features"]] == ids[7:14]
    nxt = next(link for link in items["links"] if link["rel"] == "next")
    assert "_o=7" in nxt["href"]  # kept in the query string, and ignored after a token
    assert [f["id"] for f in client.get(nxt["href"]).json()["features"]] == ids[14:21]
    for bad in ("-1", "x"):
        assert client.get("/search", params={**query, "_o": bad}).status_code == 400


def test_date_interval_ends_are_whole_utc_days(
    harvested: tuple[TestClient, psycopg.Connection],
) -> None:
    client, conn = harvested
    day = conn.execute(
        "SELECT collection, datetime::date::text FROM pgstac.items ORDER BY datetime LIMIT 1"
        " OFFSET 100"
    ).fetchone()
    expected = sql_ids(conn, day[0], f"{day[1]}T00:00:00Z", f"{day[1]}T23:59:59.999999Z")
    one_day = f"{day[1]}/{day[1]}"
    r = client.get("/search", params={"collections": day[0], "datetime": one_day, "limit": 50})
    assert r.status_code == 200, r.text
    assert {f["id"] for f in r.json()["features"]} == expected and expected
    r = client.post("/search", json={"collections": [day[0]], "datetime": one_day, "limit": 50})
    assert r.status_code == 200, r.text
    assert {f["id"] for f in r.json()["features"]} == expected
    r = client.get(f"/collections/{day[0]}/items", params={"datetime": f"{day[1]}/{day[1]}"})
    assert r.status_code == 200, r.text
    assert {f["id"] for f in r.json()["features"]} == expected
    assert r.json()["numberMatched"] == len(expected)
    open_end = client.get("/search", params={"collections": day[0], "datetime": f"{day[1]}/.."})
    assert open_end.status_code == 200
    assert client.get("/search", params={"datetime": "2021-13-01/.."}).status_code == 400
    # A lone date is not RFC 3339 and stays a 400, as stac-api-validator requires.
    assert client.get("/search", params={"datetime": day[1]}).status_code == 400


def test_number_matched_unless_declined(
    harvested: tuple[TestClient, psycopg.Connection],
) -> None:
    client, _ = harvested
    assert "numberMatched" in client.get("/search", params={"limit": 1}).json()
    assert "numberMatched" in client.post("/search", json={"limit": 1}).json()
    assert "numberMatched" not in client.get("/search", params={"count": "false"}).json()
    assert "numberMatched" not in client.post("/search", json={"count": False}).json()
