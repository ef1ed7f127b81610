"""Who sees which tiles: every principal against every policy on every tiler path, mosaics
filtered at tile time, keys carried into the URLs we hand back, caching kept per audience."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from conftest import TEMPLATE_DB
from csdr_access.admin import add_org, issue_key, revoke_key
from csdr_tiler.app import create_app
from csdr_tiler.settings import Settings
from services.tiler.tests.scenes import SMALL, WEB_MERCATOR, correlation, decode, ingest
from tests.access_principals import POLICIES, SEES, grant

pytestmark = pytest.mark.slow  # seconds per test (scenes, apps): make test, not test-fast

Z = 13
RAW = "assets=data%7Cbidx%3D3%2C2%2C1&rescale=0%2C4000"

# Every path of one scene and of one collection mosaic; {c}: collection, {i}: item id, {t}: tile,
# {p}: a point in the scene, {b}: a bbox in it.
ITEM_PATHS = [
    "/collections/{c}/items/{i}/tiles/WebMercatorQuad/{t}.png?" + RAW,
    "/collections/{c}/items/{i}/WebMercatorQuad/tilejson.json?" + RAW,
    "/collections/{c}/items/{i}/WMTSCapabilities.xml?" + RAW,
    "/collections/{c}/items/{i}/point/{p}?assets=data",
    "/collections/{c}/items/{i}/preview.png?max_size=64&" + RAW,
    "/collections/{c}/items/{i}/bbox/{b}.png?max_size=64&" + RAW,
    "/collections/{c}/items/{i}/statistics?assets=data&max_size=64",
    "/collections/{c}/items/{i}/info?assets=data",
    "/collections/{c}/items/{i}/presets/true-color/tiles/WebMercatorQuad/{t}.png",
    "/collections/{c}/items/{i}/presets/ndvi/WebMercatorQuad/tilejson.json",
    "/collections/{c}/items/{i}/presets/WMTSCapabilities.xml",
    "/collections/{c}/items/{i}/presets/false-color/preview.png?max_size=64",
]
COLLECTION_PATHS = [
    "/collections/{c}/tiles/WebMercatorQuad/{t}.png?" + RAW,
    "/collections/{c}/WebMercatorQuad/tilejson.json?" + RAW,
    "/collections/{c}/WMTSCapabilities.xml?" + RAW,
    "/collections/{c}/info",
    "/collections/{c}/point/{p}/assets",
    "/collections/{c}/tiles/WebMercatorQuad/{t}/assets",
    "/collections/{c}/presets/true-color/tiles/WebMercatorQuad/{t}.png",
    "/collections/{c}/presets/WMTSCapabilities.xml",
]
SEARCH_PATHS = [
    "/searches/{s}/tiles/WebMercatorQuad/{t}.png?" + RAW,
    "/searches/{s}/WebMercatorQuad/tilejson.json?" + RAW,
    "/searches/{s}/WMTSCapabilities.xml?" + RAW,
    "/searches/{s}/info",
    "/searches/{s}/point/{p}/assets",
    "/searches/{s}/presets/true-color/tiles/WebMercatorQuad/{t}.png",
    "/searches/{s}/presets/WMTSCapabilities.xml",
]


@dataclass
class Node:
    client: TestClient
    keys: dict[str, str]
    prefixes: dict[str, str]
    searches: dict[str, str]  # collection -> search id registered by an admin; "all": none named
    fill: dict[str, str]


def collection_copy(conn: psycopg.Connection, source: str, cid: str) -> None:
    """A copy of collection `source` and its one item, as `cid` with item `{cid}-scene`."""
    collection = conn.execute("SELECT pgstac.get_collection(%s)", (source,)).fetchone()[0]
    item = conn.execute("SELECT pgstac.get_item(%s, %s)", (f"{source}-scene", source)).fetchone()[0]
    conn.execute("SELECT pgstac.create_collection(%s)", (Jsonb({**collection, "id": cid}),))
    item |= {"id": f"{cid}-scene", "collection": cid}
    conn.execute("SELECT pgstac.create_item(%s)", (Jsonb(item),))


@pytest.fixture(scope="module")
def node(pg_cluster, tmp_path_factory) -> Iterator[Node]:
    """Four collections, one per policy: `open`, `members`, `thai` hold the same scene; `inhouse`
    (private) holds a later scene with other pixels over the same place."""
    name = f"tacc_{uuid.uuid4().hex[:8]}"
    pg_cluster.create_database(name, template=TEMPLATE_DB)
    directory = tmp_path_factory.mktemp("access")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in pg_cluster.env(name).items():
            mp.setenv(k, v)
        with psycopg.connect(autocommit=True) as conn:
            opened = ingest(conn, directory / "open", "open", name="open-scene")
            later = replace(SMALL, seed=9, acquired=datetime(2024, 8, 1, 3, 0))
            ingest(conn, directory / "inhouse", "inhouse", scene=later, name="inhouse-scene")
            collection_copy(conn, "open", "members")
            collection_copy(conn, "open", "thai")
            issued = grant(conn, POLICIES)
        app = create_app(Settings(access_ttl_s=0.5))
        with TestClient(app, raise_server_exceptions=False) as client:
            admin = {"X-API-Key": issued["admin"][0]}
            searches = {}
            for cid in [*POLICIES, "all"]:
                body = {"collections": [cid]} if cid != "all" else {"bbox": [118, 37, 120, 39]}
                r = client.post("/searches/register", json=body, headers=admin)
                assert r.status_code == 200, r.text
                searches[cid] = r.json()["id"]
            yield Node(
                client,
                {who: k for who, (k, _) in issued.items()},
                {who: p for who, (_, p) in issued.items()},
                searches,
                fill(opened.item["bbox"]),
            )
    with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fill(bbox: list[float]) -> dict[str, str]:
    """Placeholders of the path templates, at the centre of the scenes."""
    west, south, east, north = bbox
    lon, lat = (west + east) / 2, (south + north) / 2
    tile = WEB_MERCATOR.tile(lon, lat, Z)
    return {
        "t": f"{tile.z}/{tile.x}/{tile.y}",
        "p": f"{lon},{lat}",
        "b": f"{lon - 0.02},{lat - 0.02},{lon + 0.02},{lat + 0.02}",
    }


def as_(node: Node, who: str) -> dict[str, str]:
    return {} if who == "anonymous" else {"Authorization": f"Bearer {node.keys[who]}"}


def expand(template: str, node: Node, **names: str) -> str:
    for k, v in {**node.fill, **names}.items():
        template = template.replace("{" + k + "}", v)
    return template


@pytest.mark.parametrize("who", list(SEES))
def test_every_tiler_path_answers_exactly_what_the_policy_allows(node, who):
    headers = as_(node, who)
    hidden_items = {f"{c}-scene" for c in set(POLICIES) - SEES[who]}
    for cid in POLICIES:
        visible = cid in SEES[who]
        cases = [
            (t, {"c": cid, "i": f"{cid}-scene"}, {"c": "nope", "i": "nope-scene"})
            for t in ITEM_PATHS + COLLECTION_PATHS
        ]
        cases += [(t, {"s": node.searches[cid]}, {"s": "0" * 32}) for t in SEARCH_PATHS]
        for template, names, missing in cases:
            url = expand(template, node, **names)
            r = node.client.get(url, headers=headers)
            assert r.status_code == (200 if visible else 404), (who, url, r.text[:300])
            for item in hidden_items - {names.get("i")}:
                assert item not in r.text, (who, url, item)
            if not visible:
                # Exactly what a nonexistent one answers.
                gone = node.client.get(expand(template, node, **missing), headers=headers)
                assert gone.status_code == 404
                swap = dict(zip(missing.values(), names.values(), strict=True))
                expected = gone.text
                for old, new in swap.items():
                    expected = expected.replace(old, new)
                assert r.text == expected, (who, url)


@pytest.mark.parametrize("who", ["revoked", "expired"])
def test_bad_keys_answer_401_with_the_reason_on_every_path(node, who):
    names = {"c": "open", "i": "open-scene", "s": node.searches["open"]}
    for template in ITEM_PATHS + COLLECTION_PATHS + SEARCH_PATHS:
        r = node.client.get(expand(template, node, **names), headers=as_(node, who))
        assert r.status_code == 401, template
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json() == {"code": "Unauthorized", "description": r.json()["description"]}
        assert who in r.json()["description"]
    bogus = node.client.get(
        "/collections/open/info", params={"api_key": "csdr_deadbeef_" + "x" * 43}
    )
    assert bogus.status_code == 401 and "not valid" in bogus.json()["description"]
    r = node.client.post(
        "/searches/register", json={"collections": ["open"]}, headers=as_(node, who)
    )
    assert r.status_code == 401


@pytest.mark.parametrize("how", ["bearer", "header", "query"])
def test_keys_are_accepted_in_three_places(node, how):
    key = node.keys["partner A"]
    kwargs = {
        "bearer": {"headers": {"Authorization": f"Bearer {key}"}},
        "header": {"headers": {"X-API-Key": key}},
        "query": {"params": {"api_key": key}},
    }[how]
    url = expand(ITEM_PATHS[8], node, c="thai", i="thai-scene")
    assert node.client.get(url, **kwargs).status_code == 200
    assert node.client.get(url).status_code == 404


def tile_of(node: Node, base: str, who: str) -> np.ndarray:
    r = node.client.get(
        f"{base}/tiles/WebMercatorQuad/{node.fill['t']}.png?{RAW}", headers=as_(node, who)
    )
    assert r.status_code == 200, r.text
    return decode(r.content)


@pytest.mark.parametrize("who", ["anonymous", "partner B"])
def test_a_mosaic_registered_by_an_admin_shows_a_caller_only_what_they_may_see(node, who):
    search = f"/searches/{node.searches['all']}"
    public = tile_of(node, "/collections/open/items/open-scene", "admin")
    private = tile_of(node, "/collections/inhouse/items/inhouse-scene", "admin")
    assert correlation(public[0], private[0]) < 0.5, "the two scenes must differ"
    # The admin sees the later (private) scene on top; the caller the public one beneath it.
    assert correlation(tile_of(node, search, "admin")[0], private[0]) > 0.99
    mine = tile_of(node, search, who)
    assert (mine[3] > 0).mean() > 0.9
    assert correlation(mine[0], public[0]) > 0.99
    # Nor do its scene lists or statistics name the private scene.
    headers = as_(node, who)
    for path in [
        f"{search}/point/{node.fill['p']}/assets",
        f"{search}/tiles/WebMercatorQuad/{node.fill['t']}/assets",
        f"{search}/bbox/{node.fill['b']}/assets",
    ]:
        r = node.client.get(path, headers=headers)
        assert r.status_code == 200, r.text
        assert "inhouse-scene" not in r.text and "open-scene" in r.text, path
    west, south, east, north = (float(v) for v in node.fill["b"].split(","))
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    feature = {
        "type": "Feature",
        "properties": {},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }
    mine = node.client.post(
        f"{search}/statistics?assets=data&max_size=64", json=feature, headers=headers
    )
    theirs = node.client.post(
        f"{search}/statistics?assets=data&max_size=64", json=feature, headers=as_(node, "admin")
    )
    direct = node.client.post(
        "/collections/open/items/open-scene/statistics?assets=data&max_size=64",
        json=feature,
        headers=headers,
    )
    assert mine.status_code == theirs.status_code == direct.status_code == 200, mine.text
    assert "inhouse-scene" not in mine.text

    def mean(r):
        return next(iter(r.json()["properties"]["statistics"].values()))["mean"]

    assert mean(mine) == pytest.approx(mean(direct), rel=0.02)
    assert mean(mine) != pytest.approx(mean(theirs), rel=0.02)


def test_a_mosaic_naming_only_invisible_collections_and_its_info(node):
    # `inhouse` only: gone for a partner; the mixed one serves tiles but keeps its info private.
    partner = as_(node, "partner A")
    r = node.client.post(
        "/searches/register", json={"collections": ["open", "inhouse"]}, headers=as_(node, "admin")
    )
    mixed = r.json()["id"]
    tile = node.client.get(
        f"/searches/{mixed}/tiles/WebMercatorQuad/{node.fill['t']}.png?{RAW}", headers=partner
    )
    assert tile.status_code == 200
    assert node.client.get(f"/searches/{mixed}/info", headers=partner).status_code == 404
    assert node.client.get(f"/searches/{mixed}/info", headers=as_(node, "admin")).status_code == 200
    listed = node.client.get("/searches/", params={"limit": 100}, headers=partner).json()
    assert mixed not in str(listed) and "inhouse" not in str(listed)


def test_qgis_xyz_template_with_the_key_in_the_query(node):
    key = node.keys["partner A"]
    base = "/collections/thai/items/thai-scene/presets/false-color"
    template = f"{base}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png"
    url = template.format(**dict(zip("zxy", node.fill["t"].split("/"), strict=True)))
    assert node.client.get(url, params={"api_key": key}).status_code == 200
    assert node.client.get(url).status_code == 404
    tilejson = node.client.get(f"{base}/WebMercatorQuad/tilejson.json", params={"api_key": key})
    assert tilejson.status_code == 200
    (tiles,) = tilejson.json()["tiles"]
    assert f"api_key={key}" in tiles
    # A header-keyed TileJSON lists URLs without the key.
    by_header = node.client.get(f"{base}/WebMercatorQuad/tilejson.json", headers={"X-API-Key": key})
    assert "api_key" not in by_header.text and key not in by_header.text
    for path in [
        "/collections/thai/items/thai-scene/presets/WMTSCapabilities.xml",
        f"/collections/thai/items/thai-scene/WMTSCapabilities.xml?{RAW}",
        "/collections/thai/presets/WMTSCapabilities.xml",
        f"/collections/thai/WMTSCapabilities.xml?{RAW}",
        f"/searches/{node.searches['thai']}/presets/WMTSCapabilities.xml",
        f"/searches/{node.searches['thai']}/WMTSCapabilities.xml?{RAW}",
    ]:
        sep = "&" if "?" in path else "?"
        r = node.client.get(f"{path}{sep}api_key={key}")
        assert r.status_code == 200, (path, r.text)
        templates = r.text.count("template=")
        assert templates and r.text.count(f"api_key={key}") >= templates, path
        assert key not in node.client.get(path, headers={"X-API-Key": key}).text, path


def test_search_register_list_and_info_links_carry_a_query_key(node):
    key = node.keys["partner A"]
    r = node.client.post(
        "/searches/register", params={"api_key": key}, json={"collections": ["thai"]}
    )
    assert r.status_code == 200, r.text
    links = r.json()["links"]
    assert links and all(f"api_key={key}" in link["href"] for link in links)
    info = node.client.get(f"/searches/{r.json()['id']}/info", params={"api_key": key}).json()
    assert all(f"api_key={key}" in link["href"] for link in info["links"])
    listed = node.client.get("/searches/", params={"api_key": key, "limit": 100})
    assert listed.status_code == 200, listed.text
    ids = [s["search"]["hash"] for s in listed.json()["searches"]]
    assert r.json()["id"] in ids
    assert all(
        f"api_key={key}" in link["href"] for s in listed.json()["searches"] for link in s["links"]
    )
    headed = node.client.post(
        "/searches/register", headers={"X-API-Key": key}, json={"collections": ["thai"]}
    )
    assert key not in headed.text


def test_keyed_answers_are_private_and_the_cache_never_crosses_audiences(node):
    url = expand(ITEM_PATHS[8], node, c="thai", i="thai-scene")
    a = node.client.get(url, headers=as_(node, "partner A"))
    assert a.status_code == 200 and a.headers["cache-control"].startswith("private")
    assert "X-API-Key" in a.headers["vary"]
    # Another key that may not see it gets no cached answer and no 304 for the same ETag.
    for who in ["partner B", "anonymous", "registered"]:
        r = node.client.get(url, headers={**as_(node, who), "If-None-Match": a.headers["etag"]})
        assert r.status_code == 404, who
    # Another key that may see it gets its own ETag: cached answers are kept per key.
    admin = node.client.get(url, headers=as_(node, "admin"))
    assert admin.status_code == 200 and admin.headers["etag"] != a.headers["etag"]
    # A public item's answers are shared, and public for anonymous callers.
    public = expand(ITEM_PATHS[8], node, c="open", i="open-scene")
    anon = node.client.get(public)
    assert anon.headers["cache-control"].startswith("public")
    keyed = node.client.get(public, headers=as_(node, "partner A"))
    assert keyed.headers["etag"] == anon.headers["etag"]
    assert keyed.headers["cache-control"].startswith("private")


def test_a_revoked_key_stops_working_within_the_access_ttl(node):
    with psycopg.connect(autocommit=True) as conn:
        key, prefix = issue_key(conn, "GISTDA", ["read"], "test")
    url = expand(ITEM_PATHS[8], node, c="thai", i="thai-scene")
    assert node.client.get(url, params={"api_key": key}).status_code == 200
    with psycopg.connect(autocommit=True) as conn:
        revoke_key(conn, prefix, "test")
    start = time.monotonic()
    while (r := node.client.get(url, params={"api_key": key})).status_code == 200:
        assert time.monotonic() - start < 5, "still served 5 s after revocation"
        time.sleep(0.1)
    assert r.status_code == 401 and "revoked" in r.json()["description"]


def test_rate_limit_per_key_answers_429_with_retry_after(node, pg_cluster):
    with psycopg.connect(autocommit=True) as conn:
        add_org(conn, "Busy", "TH", "partner", "test")
        key = issue_key(conn, "Busy", ["read"], "test")[0]
    app = create_app(Settings(rate_limit_per_s=0.01, rate_limit_burst=2))
    with TestClient(app, raise_server_exceptions=False) as client:
        keyed = {"X-API-Key": key}
        codes = [client.get("/collections/open/info", headers=keyed).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        r = client.get("/collections/open/info", headers=keyed)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["code"] == "TooManyRequests"
        assert client.get("/collections/open/info").status_code == 200  # anonymous: not limited
