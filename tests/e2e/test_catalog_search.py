"""Partners' searches through pystac-client against the catalog process: every filter kind, and
paging through more than 1,000 results, each compared with the ids the same question asked of
pgSTAC's items table in SQL returns."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from pystac_client import Client

from conftest import TEMPLATE_DB, free_port
from infra.local.pgcluster import Cluster
from tests.e2e import catalog_scenes
from tests.e2e.processes import service

ITEM_COUNT = 1_500


@pytest.fixture(scope="module")
def catalog_db(pg_cluster: Cluster) -> Iterator[dict[str, str]]:
    """A database with the synthetic sensors' collections and ITEM_COUNT scenes."""
    name = f"e2e_cat_{uuid.uuid4().hex[:8]}"
    pg_cluster.create_database(name, template=TEMPLATE_DB)
    env = pg_cluster.env(name)
    catalog_scenes.load(env, ITEM_COUNT)
    yield env
    with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def catalog_url(
    catalog_db: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The catalog as a real uvicorn process over `catalog_db`."""
    logs: Path = tmp_path_factory.mktemp("catalog")
    with service("csdr_catalog.app:create_app", free_port(), catalog_db, logs) as url:
        yield url


@pytest.fixture(scope="module")
def client(catalog_url: str) -> Client:
    return Client.open(catalog_url)


def sql_ids(env: dict[str, str], where: str, params: tuple = ()) -> set[str]:
    """The ids of pgSTAC's items matching a WHERE clause over `items` (alias i)."""
    with psycopg.connect(catalog_scenes.conninfo(env)) as conn:
        rows = conn.execute(f"SELECT i.id FROM pgstac.items i WHERE {where}", params).fetchall()  # type: ignore[arg-type]
    return {r[0] for r in rows}


def search_ids(client: Client, **kwargs: object) -> list[str]:
    """Every id a pystac-client search yields, across all its pages."""
    return [item["id"] for item in client.search(limit=200, **kwargs).items_as_dicts()]  # type: ignore[arg-type]


PROPS = "i.content->'properties'"
BBOX = [100.0, 25.0, 112.0, 35.0]
ENVELOPE = "ST_MakeEnvelope(100, 25, 112, 35, 4326)"


def test_bbox(client, catalog_db):
    got = search_ids(client, bbox=BBOX)
    assert len(got) == len(set(got))
    expected = sql_ids(catalog_db, f"ST_Intersects(i.geometry, {ENVELOPE})")
    assert 50 < len(expected) < ITEM_COUNT and set(got) == expected


def test_intersects_polygon(client, catalog_db):
    ring = [[105, 30], [110, 30], [110, 40], [105, 30]]
    got = search_ids(client, intersects={"type": "Polygon", "coordinates": [ring]})
    expected = sql_ids(
        catalog_db,
        "ST_Intersects(i.geometry,"
        " ST_GeomFromText('POLYGON((105 30,110 30,110 40,105 30))', 4326))",
    )
    assert expected and set(got) == expected


@pytest.mark.parametrize(
    ("interval", "where"),
    [
        (
            "2021-03-01T00:00:00Z/2021-06-30T23:59:59Z",
            "i.datetime BETWEEN '2021-03-01T00:00:00Z' AND '2021-06-30T23:59:59Z'",
        ),
        ("../2020-06-30T00:00:00Z", "i.datetime <= '2020-06-30T00:00:00Z'"),
        ("2024-07-01T00:00:00Z/..", "i.datetime >= '2024-07-01T00:00:00Z'"),
    ],
)
def test_datetime_ranges(client, catalog_db, interval, where):
    got = search_ids(client, datetime=interval)
    expected = sql_ids(catalog_db, where)
    assert expected and set(got) == expected


def test_cql2_text_by_get(client, catalog_db):
    got = search_ids(
        client,
        method="GET",
        filter="eo:cloud_cover < 20 AND platform = 'gf-2'",
        filter_lang="cql2-text",
    )
    expected = sql_ids(
        catalog_db, f"({PROPS}->>'eo:cloud_cover')::float < 20 AND {PROPS}->>'platform' = 'gf-2'"
    )
    assert expected and set(got) == expected


def test_cql2_json_by_post(client, catalog_db):
    expr = {
        "op": "and",
        "args": [
            {"op": ">=", "args": [{"property": "view:sun_elevation"}, 60]},
            {"op": "a_overlaps", "args": [{"property": "instruments"}, ["mux"]]},
            {
                "op": "s_intersects",
                "args": [
                    {"property": "geometry"},
                    {
                        "type": "Polygon",
                        "coordinates": [[[90, 20], [130, 20], [130, 50], [90, 50], [90, 20]]],
                    },
                ],
            },
        ],
    }
    got = search_ids(client, method="POST", filter=expr, filter_lang="cql2-json")
    expected = sql_ids(
        catalog_db,
        f"({PROPS}->>'view:sun_elevation')::float >= 60 AND {PROPS}->'instruments' ? 'mux'"
        " AND ST_Intersects(i.geometry, ST_MakeEnvelope(90, 20, 130, 50, 4326))",
    )
    assert expected and set(got) == expected


def test_query_extension_with_every_kind_of_operator(client, catalog_db):
    query = {
        "eo:cloud_cover": {"lt": 30},
        "platform": {"startsWith": "gf-"},
        "processing:level": {"in": ["L1A"]},
        "instruments": {"in": ["wfv"]},
    }
    got = search_ids(client, query=query)
    expected = sql_ids(
        catalog_db,
        f"({PROPS}->>'eo:cloud_cover')::float < 30 AND {PROPS}->>'platform' LIKE 'gf-%%'"
        f" AND {PROPS}->>'processing:level' = 'L1A' AND {PROPS}->'instruments' ? 'wfv'",
    )
    assert expected and set(got) == expected


def test_sortby_cloud_cover_descending(client, catalog_db):
    items = list(client.search(bbox=BBOX, sortby="-eo:cloud_cover", limit=100).items_as_dicts())
    clouds = [i["properties"]["eo:cloud_cover"] for i in items]
    assert clouds == sorted(clouds, reverse=True) and len(clouds) > 100
    assert {i["id"] for i in items} == sql_ids(catalog_db, f"ST_Intersects(i.geometry, {ENVELOPE})")


def test_fields_include_only_what_was_asked(client):
    items = list(
        client.search(
            collections=["gf2-pms-l1a"], fields=["id", "properties.eo:cloud_cover"], max_items=5
        ).items_as_dicts()
    )
    assert len(items) == 5
    for item in items:
        assert "geometry" not in item and "assets" not in item
        assert set(item["properties"]) == {"eo:cloud_cover"}


def test_paging_through_more_than_1000_results_yields_the_sql_set(client, catalog_db):
    got = [
        item["id"]
        for item in client.search(
            collections=["gf1-wfv-l1a", "gf2-pms-l1a", "zy3-mux-l1a"], limit=100
        ).items_as_dicts()
    ]
    expected = sql_ids(catalog_db, "i.collection <> 'cbers4-mux-l2'")
    assert len(expected) > 1_000
    assert len(got) == len(set(got)) and set(got) == expected


def test_collection_search_with_q_bbox_and_datetime(client):
    found = [c.id for c in client.collection_search(q="gaofen").collections()]
    assert sorted(found) == ["gf1-wfv-l1a", "gf2-pms-l1a"]
    found = [c.id for c in client.collection_search(q="cbers").collections()]
    assert found == ["cbers4-mux-l2"]
    assert [c.id for c in client.collection_search(bbox=[0, -10, 10, 0]).collections()] == []
    assert len(list(client.collection_search(bbox=[100, 30, 101, 31]).collections())) == 4
    before = client.collection_search(datetime="2010-01-01T00:00:00Z/2012-01-01T00:00:00Z")
    assert list(before.collections()) == []


def test_number_matched_unless_declined(catalog_url, catalog_db):
    body = {"collections": ["gf2-pms-l1a"], "limit": 1}
    declined = httpx.post(f"{catalog_url}/search", json={**body, "count": False}).json()
    assert "numberMatched" not in declined
    counted = httpx.post(f"{catalog_url}/search", json=body).json()
    expected = sql_ids(catalog_db, "i.collection = 'gf2-pms-l1a'")
    assert counted["numberMatched"] == len(expected)
    assert counted["numberMatchedEstimated"] is False
    by_get = httpx.get(f"{catalog_url}/search", params={"collections": "gf2-pms-l1a"})
    assert by_get.json()["numberMatched"] == len(expected)


def test_landing_page_links_every_collection_for_harvesters(client):
    children = {c.id for c in client.get_children()}
    assert children == {s.collection for s in catalog_scenes.SENSORS}


def test_aggregations_equal_sql_counts_for_the_same_search(catalog_url, catalog_db):
    search = {
        "bbox": BBOX,
        "datetime": "2021-01-01T00:00:00Z/2023-12-31T23:59:59Z",
        "filter": {"op": "<", "args": [{"property": "eo:cloud_cover"}, 50]},
    }
    r = httpx.post(f"{catalog_url}/aggregate", json=search, timeout=60)
    assert r.status_code == 200, r.text
    got = {a["name"]: a for a in r.json()["aggregations"]}
    where = (
        f"ST_Intersects(i.geometry, {ENVELOPE})"
        " AND i.datetime BETWEEN '2021-01-01T00:00:00Z' AND '2023-12-31T23:59:59Z'"
        f" AND ({PROPS}->>'eo:cloud_cover')::float < 50"
    )

    def sql_counts(key: str, extra_from: str = "") -> dict[str, int]:
        with psycopg.connect(catalog_scenes.conninfo(catalog_db)) as conn:
            rows = conn.execute(
                f"SELECT {key}, count(*) FROM pgstac.items i {extra_from} WHERE {where} GROUP BY 1"  # type: ignore[arg-type]
            ).fetchall()
        return {str(k): n for k, n in rows}

    def buckets(name: str) -> dict[str, int]:
        return {b["key"]: b["frequency"] for b in got[name]["buckets"]}

    total = len(sql_ids(catalog_db, where))
    assert total > 20 and got["total_count"]["value"] == total
    assert buckets("collection_frequency") == sql_counts("i.collection")
    assert buckets("platform_frequency") == sql_counts(f"{PROPS}->>'platform'")
    assert buckets("instruments_frequency") == sql_counts(
        "ins", f", jsonb_array_elements_text({PROPS}->'instruments') ins"
    )
    assert buckets("datetime_frequency") == sql_counts(
        "to_char(i.datetime AT TIME ZONE 'UTC', 'YYYY-MM') || '-01T00:00:00Z'"
    )
    by_decile = sql_counts(f"width_bucket(({PROPS}->>'eo:cloud_cover')::float, 0, 100, 10)")
    assert buckets("cloud_cover_frequency") == {
        f"{(int(k) - 1) * 10}-{int(k) * 10}": n for k, n in by_decile.items()
    }


def test_aggregate_by_get_with_cql2_text_and_a_collection(catalog_url, catalog_db):
    r = httpx.get(
        f"{catalog_url}/collections/gf2-pms-l1a/aggregate",
        params={"aggregations": "total_count,platform_frequency", "filter": "gsd < 5"},
    )
    assert r.status_code == 200, r.text
    got = {a["name"]: a for a in r.json()["aggregations"]}
    expected = len(sql_ids(catalog_db, "i.collection = 'gf2-pms-l1a'"))
    assert got["total_count"]["value"] == expected
    assert got["platform_frequency"]["buckets"] == [
        {"key": "gf-2", "data_type": "string", "frequency": expected}
    ]
    bad = httpx.get(f"{catalog_url}/aggregate", params={"aggregations": "nope"})
    assert bad.status_code == 400 and "nope" in bad.json()["description"]
