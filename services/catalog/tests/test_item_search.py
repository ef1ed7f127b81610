"""The catalog's composed item search (`item_search.py`) against pgSTAC's own `search()`: the same
items in the same order, the same formatted rows, the same next/prev tokens, page after page in
both directions, for every kind of search; and the catalog's pages over HTTP against stock
stac-fastapi-pgstac's on the same database, links included."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import orjson
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb
from stac_fastapi.pgstac.app import instantiate_api
from stac_fastapi.pgstac.config import Settings as StockSettings

from conftest import TEMPLATE_DB
from csdr_access.admin import add_org, issue_key
from csdr_catalog import db
from csdr_catalog.app import create_app
from csdr_catalog.item_search import ItemSearch, Page
from csdr_catalog.settings import SEARCH_EXTENSIONS, Settings
from infra.local.pgcluster import Cluster
from tests.e2e import catalog_scenes

pytestmark = pytest.mark.slow  # seconds per test (scenes, apps): make test, not test-fast

ITEMS = 160
NOHYDRATE = {"nohydrate": True}
TIED = "2022-06-15T03:00:00Z"  # datetime shared by the tied items below


def extra_items() -> list[dict[str, Any]]:
    """Items that stress ordering and tokens: ties on datetime and cloud cover broken only by id
    (and collection), a non-ASCII id, and an item with links of its own."""
    base = next(catalog_scenes.items(1, seed=9))
    made = []
    for n, (collection, item_id) in enumerate(
        [
            ("gf1-wfv-l1a", "TIE_A"),
            ("gf1-wfv-l1a", "TIE_B"),
            ("zy3-mux-l1a", "TIE_A"),
            ("gf1-wfv-l1a", "高分_测试:1/2"),
        ]
    ):
        item = orjson.loads(orjson.dumps(base))
        item.update(id=item_id, collection=collection)
        item["properties"].update(datetime=TIED, **{"eo:cloud_cover": 12.5})
        if n == 3:
            item["links"] = [{"rel": "license", "href": "../license.html", "type": "text/html"}]
        made.append(item)
    return made


@pytest.fixture(scope="module")
def search_db(pg_cluster: Cluster) -> Iterator[dict[str, str]]:
    """The synthetic sensors' scenes, tied items, and a collection edited after its first items
    were loaded (so its items carry two different base items)."""
    name = f"isearch_{uuid.uuid4().hex[:8]}"
    pg_cluster.create_database(name, template=TEMPLATE_DB)
    env = pg_cluster.env(name)
    catalog_scenes.load(env, ITEMS)
    with psycopg.connect(pg_cluster.conninfo(name), autocommit=True) as conn:
        for item in extra_items():
            conn.execute("SELECT pgstac.create_item(%s)", (Jsonb(item),))
        edited = catalog_scenes.collection(catalog_scenes.SENSORS[1])
        edited["item_assets"]["data"]["title"] = "COG, second edition"
        conn.execute("SELECT pgstac.update_collection(%s)", (Jsonb(edited),))
        for item in catalog_scenes.items(12, seed=11):
            item.update(id=f"LATE_{item['id']}", collection=edited["id"])
            conn.execute("SELECT pgstac.create_item(%s)", (Jsonb(item),))
        # Tags pgSTAC never writes but must read: one naming no base item, one malformed.
        for tag, item_id in ((Jsonb(999), "LATE_%_0000001"), (Jsonb("x"), "LATE_%_0000002")):
            conn.execute(
                "UPDATE pgstac.items SET content = content || jsonb_build_object("
                "'pgstac:base_item', %s::jsonb) WHERE id LIKE %s",
                (tag, item_id),
            )
        tags = conn.execute(
            "SELECT DISTINCT content->'pgstac:base_item' FROM pgstac.items WHERE collection = %s",
            (edited["id"],),
        ).fetchall()
        assert len(tags) == 4, tags  # untagged, tagged with the edit's base item, 999, "x"
    yield env
    with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def read_connection(env: dict[str, str]) -> asyncpg.Connection:
    """A connection set up as the catalog's read pool sets its connections up."""
    return await db.read_connection(db.read_pool_settings(env))


def pgstac_page(result: dict[str, Any]) -> Page:
    """pgstac.search()'s answer read as the catalog reads it (tokens from the links)."""
    tokens = {"next": None, "prev": None}
    for link in result.get("links", []):
        if link["rel"] in tokens:
            tokens[link["rel"]] = link["href"].split(f"token={link['rel']}:")[1]
    return Page(
        features=result.get("features", []),
        next=tokens["next"],
        prev=tokens["prev"],
        number_matched=result.get("numberMatched"),
    )


async def both(
    conn: asyncpg.Connection, composed: ItemSearch, search: dict[str, Any]
) -> tuple[Page, Page]:
    """The same search asked of pgSTAC and of the composed path."""
    search = {**search, "conf": NOHYDRATE}
    ours = await composed.search(conn, search)
    theirs = pgstac_page(
        await conn.fetchval("SELECT pgstac.search($1::text::jsonb)", orjson.dumps(search).decode())
    )
    return ours, theirs


def ids(page: Page) -> list[str]:
    return [f["id"] for f in page.features]


async def walk(conn: asyncpg.Connection, composed: ItemSearch, search: dict[str, Any]) -> int:
    """Page forward to the end and back to the start, comparing every page; the pages seen."""
    token, pages, forward = None, 0, True
    while True:
        asked = {**search, **({"token": token} if token else {})}
        ours, theirs = await both(conn, composed, asked)
        assert ours == theirs, (asked, ids(ours), ids(theirs), ours.next, theirs.next)
        pages += 1
        assert pages < 60, "paging did not end"
        if forward and ours.next:
            token = f"next:{ours.next}"
        elif ours.prev:
            forward, token = False, f"prev:{ours.prev}"
        else:
            return pages


POLYGON = {
    "type": "Polygon",
    "coordinates": [[[100, 25], [112, 25], [112, 40], [100, 40], [100, 25]]],
}
CLOUDY = {"op": ">", "args": [{"property": "eo:cloud_cover"}, 60]}
SEARCHES: list[dict[str, Any]] = [
    {"limit": 40},
    {"collections": ["gf1-wfv-l1a"], "limit": 9},
    {"collections": ["gf2-pms-l1a", "zy3-mux-l1a"], "limit": 13},
    {"bbox": [100.0, 25.0, 120.0, 40.0], "limit": 11},
    {"intersects": POLYGON, "limit": 5},
    {"datetime": "2021-03-01T00:00:00Z/2022-06-30T23:59:59Z", "limit": 8},
    {
        "datetime": "../2020-12-31T00:00:00Z",
        "sortby": [{"field": "datetime", "direction": "asc"}],
        "limit": 6,
    },
    {"filter": CLOUDY, "filter-lang": "cql2-json", "limit": 12},
    {"sortby": [{"field": "properties.eo:cloud_cover", "direction": "desc"}], "limit": 30},
    {"sortby": [{"field": "properties.eo:cloud_cover", "direction": "asc"}], "limit": 17},
    {"sortby": [{"field": "id", "direction": "asc"}], "limit": 35},
    {
        "sortby": [
            {"field": "properties.platform", "direction": "asc"},
            {"field": "datetime", "direction": "desc"},
        ],
        "limit": 25,
    },
    {"query": {"platform": {"eq": "gf-2"}}, "limit": 10},
    {"ids": ["TIE_A", "TIE_B", "高分_测试:1/2"], "limit": 1},
    {"datetime": TIED, "limit": 1},
    {"fields": {"exclude": ["geometry"]}, "limit": 50},
    {"fields": {"include": ["id", "properties.eo:cloud_cover"], "exclude": []}, "limit": 50},
    {"filter": {"op": "=", "args": [{"property": "platform"}, "none"]}, "filter-lang": "cql2-json"},
]


@pytest.mark.parametrize("search", SEARCHES, ids=lambda s: orjson.dumps(s).decode()[:60])
def test_composed_pages_equal_pgstac_search_both_ways(search_db, search):
    async def run() -> int:
        conn = await read_connection(search_db)
        try:
            composed = ItemSearch()
            pages = await walk(conn, composed, search)
            await walk(conn, composed, search)  # again, with the clauses and plans kept
            return pages
        finally:
            await conn.close()

    pages = asyncio.run(run())
    assert pages >= 1


def test_the_walks_cover_ties_and_many_pages(search_db):
    async def run() -> tuple[int, list[str]]:
        conn = await read_connection(search_db)
        try:
            composed = ItemSearch()
            pages = await walk(conn, composed, {"limit": 40})
            tied = await composed.search(conn, {"datetime": TIED, "limit": 10, "conf": NOHYDRATE})
            return pages, ids(tied)
        finally:
            await conn.close()

    pages, tied = asyncio.run(run())
    # Forward and back over 176 items at 40 a page; the ties ordered by collection, then id.
    assert pages == 9
    assert tied == ["TIE_A", "高分_测试:1/2", "TIE_B", "TIE_A"]


def test_bad_tokens_fail_as_pgstac_fails(search_db):
    async def outcome(conn: asyncpg.Connection, coro: Any) -> tuple[type, str]:
        try:
            await coro
        except asyncpg.PostgresError as exc:
            return type(exc), str(exc)
        raise AssertionError("no error")

    async def run() -> None:
        conn = await read_connection(search_db)
        try:
            for token in ("next:zz", "sideways:00:00", "next:6162:6364", "prev:"):
                search = {"token": token, "conf": NOHYDRATE}
                ours = await outcome(conn, ItemSearch().search(conn, search))
                theirs = await outcome(
                    conn,
                    conn.fetchval(
                        "SELECT pgstac.search($1::text::jsonb)", orjson.dumps(search).decode()
                    ),
                )
                assert ours == theirs
        finally:
            await conn.close()

    asyncio.run(run())


def test_settings_and_queryables_changes_reach_kept_clauses(pg_cluster, database):
    """numberMatched appears once pgSTAC's context is switched on, and a queryable whose wrapper
    changes sorts the new way, for clauses kept from before either change."""
    catalog_scenes.load(database, 40)
    by_cloud = {"sortby": [{"field": "properties.eo:cloud_cover", "direction": "asc"}]}

    async def run() -> None:
        conn = await read_connection(database)
        composed = ItemSearch()
        try:
            ours, theirs = await both(conn, composed, {"limit": 5})
            assert ours == theirs and ours.number_matched is None
            ours, theirs = await both(conn, composed, {**by_cloud, "limit": 40})
            assert ours == theirs
            with psycopg.connect(pg_cluster.conninfo(database["PGDATABASE"])) as pg:
                pg.execute("SET search_path = pgstac, public")  # as pgSTAC's triggers expect
                pg.execute("UPDATE pgstac.pgstac_settings SET value = 'on' WHERE name = 'context'")
                pg.execute(
                    "UPDATE pgstac.queryables SET property_wrapper = 'to_text'"
                    " WHERE name = 'eo:cloud_cover'"
                )
            ours, theirs = await both(conn, composed, {"limit": 5})
            assert ours == theirs and ours.number_matched == 40
            before = [f["properties"]["eo:cloud_cover"] for f in ours.features]
            ours, theirs = await both(conn, composed, {**by_cloud, "limit": 40})
            assert ours == theirs
            clouds = [f["properties"]["eo:cloud_cover"] for f in ours.features]
            assert clouds == sorted(clouds, key=str) != sorted(clouds), before
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(scope="module")
def clients(search_db) -> Iterator[tuple[TestClient, TestClient]]:
    """The catalog and stock stac-fastapi-pgstac (hydrating in the API, as the catalog does)."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in search_db.items():
            mp.setenv(key, value)
        stock = instantiate_api(
            settings=StockSettings(use_api_hydrate=True, enabled_extensions=list(SEARCH_EXTENSIONS))
        ).app
        with TestClient(create_app(Settings())) as ours, TestClient(stock) as theirs:
            yield ours, theirs


REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/search", {"limit": "30"}),
    ("GET", "/search", {"bbox": "100,25,120,40", "filter": "eo:cloud_cover > 30", "limit": "7"}),
    (
        "GET",
        "/search",
        {"sortby": "-eo:cloud_cover", "datetime": "2021-01-01T00:00:00Z/..", "limit": "20"},
    ),
    ("POST", "/search", {"collections": ["gf2-pms-l1a"], "limit": 6}),
    (
        "POST",
        "/search",
        {"intersects": POLYGON, "sortby": [{"field": "id", "direction": "desc"}], "limit": 9},
    ),
    ("GET", "/collections/gf1-wfv-l1a/items", {"limit": "15"}),
    (
        "GET",
        "/collections/gf2-pms-l1a/items",
        {"limit": "10", "datetime": "2022-01-01T00:00:00Z/.."},
    ),
]


def follow(client: TestClient, method: str, path: str, params: dict[str, Any]) -> list[Any]:
    """A request and every page its next links lead to, then back along the prev links."""
    pages: list[Any] = []
    request: dict[str, Any] = {"method": method, "url": path}
    request["params" if method == "GET" else "json"] = params
    rel = "next"
    while len(pages) < 40:
        response = client.request(**request)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        links = {link["rel"]: link for link in page["links"]}
        if rel == "next" and "next" not in links:
            rel = "previous"
        if rel not in links:
            return pages
        link = links[rel]
        request = {"method": link.get("method", "GET"), "url": link["href"]}
        if "body" in link:
            request["json"] = link["body"]
    raise AssertionError("paging did not end")


@pytest.mark.parametrize(("method", "path", "params"), REQUESTS)
def test_pages_equal_stock_stac_fastapi_pgstac(clients, method, path, params):
    ours, theirs = clients
    got = follow(ours, method, path, params)
    want = follow(theirs, method, path, params)
    assert len(got) > 1
    for page in got:  # ours alone counts every page (harvesters read numberMatched)
        assert page.pop("numberMatched") >= page["numberReturned"]
        assert page.pop("numberMatchedEstimated") is False
    assert got == want


def test_items_page_of_a_missing_collection_is_404_as_upstream(pg_cluster, search_db, clients):
    """As an administrator (whom the access middleware lets through to any collection path)."""
    ours, theirs = clients
    with psycopg.connect(pg_cluster.conninfo(search_db["PGDATABASE"]), autocommit=True) as conn:
        add_org(conn, "Admins", "CN", "main", "test")
        key = issue_key(conn, "Admins", ["admin"], "test")[0]
    for params in ({}, {"token": "next:zz"}, {"filter": "eo:cloud_cover <"}):
        got = ours.get("/collections/nope/items", params=params, headers={"X-API-Key": key})
        want = theirs.get("/collections/nope/items", params=params)
        assert got.status_code == want.status_code == 404
        assert got.json() == want.json()


def test_footprint_time_cloud_index_on_every_partition_and_kept_by_pgstac(pg_cluster, search_db):
    """Migration 0012's index is on every partition of the loaded items (made after the
    migration), and pgSTAC's index maintenance counts it as one of items' own, not an orphan."""
    with psycopg.connect(pg_cluster.conninfo(search_db["PGDATABASE"])) as conn:
        conn.execute("SET search_path = pgstac, public")
        leaves = conn.execute(
            "SELECT count(*) FROM pg_partition_tree('pgstac.items') WHERE isleaf"
        ).fetchone()
        indexed = conn.execute(
            "SELECT count(*) FROM pg_partition_tree('pgstac.items') t"
            " JOIN pg_index i ON i.indrelid = t.relid"
            " WHERE t.isleaf AND pg_get_indexdef(i.indexrelid)"
            " LIKE '%gist (geometry, datetime, to_float(((content -> ''properties''::text)"
            " -> ''eo:cloud_cover''::text)))'"
        ).fetchone()
        orphans = conn.execute(
            "SELECT indexname FROM queryable_indexes('items', true) WHERE queryable_id IS NULL"
        ).fetchall()
    assert leaves is not None and indexed is not None
    assert leaves[0] >= 20 and indexed[0] == leaves[0]
    assert orphans == []
