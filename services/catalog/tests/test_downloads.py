"""Asset downloads: items point their local assets at `/collections/{c}/items/{i}/assets/{key}`,
which serves the file (with byte ranges) to whoever may see the item and to nobody else, and a
key given as `?api_key=` travels in every link to this node we hand back."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from conftest import TEMPLATE_DB
from csdr_catalog.app import create_app
from csdr_catalog.settings import Settings
from tests.access_principals import POLICIES, SEES, collection, grant, item
from tests.access_principals import key_headers as as_

POLICY_PAGE = "https://data-policy.example.org/csdr"
TILER = "http://tiles.example.test"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict[str, Path]:
    """An asset store with one file per collection, a symlink out of it, and a file outside."""
    root = tmp_path_factory.mktemp("assets")
    outside = tmp_path_factory.mktemp("elsewhere") / "secret.txt"
    outside.write_text("not an asset")
    files = {cid: root / cid / "scene.tif" for cid in POLICIES}
    for cid, path in files.items():
        path.parent.mkdir()
        path.write_bytes(os.urandom(4096) + cid.encode())
    (root / "open" / "link.tif").symlink_to(outside)
    return {"root": root, "outside": outside, **files}


@pytest.fixture(scope="module")
def setup(pg_cluster, store) -> Iterator[tuple[TestClient, dict[str, str]]]:
    name = f"dl_{uuid.uuid4().hex[:10]}"
    pg_cluster.create_database(name, template=TEMPLATE_DB)
    env = pg_cluster.env(name)
    with psycopg.connect(pg_cluster.conninfo(name), autocommit=True) as conn:
        for cid in POLICIES:
            license = [{"rel": "license", "href": POLICY_PAGE, "type": "text/html"}]
            conn.execute(
                "SELECT pgstac.create_collection(%s)", (Jsonb(collection(cid, links=license)),)
            )
            for n in range(2):
                assets = {
                    "data": {"href": str(store[cid]), "type": "image/tiff", "roles": ["data"]},
                    "remote": {"href": "https://mirror.example.org/scene.tif"},
                    "outside": {"href": str(store["outside"])},
                    "escape": {"href": str(store["root"] / "open" / "link.tif")},
                    "climb": {"href": f"{store['root']}/open/../../{store['outside'].name}"},
                    "gone": {"href": str(store["root"] / cid / "deleted.tif")},
                }
                scene = item(cid, f"{cid}-scene-{n}", n + 1, assets=assets, links=license)
                conn.execute("SELECT pgstac.create_item(%s)", (Jsonb(scene),))
        keys = {who: key for who, (key, _) in grant(conn, POLICIES).items()}
    settings = Settings(access_ttl_s=0, asset_roots=[str(store["root"])], tiler_url=TILER)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            yield client, keys
    with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def download(cid: str, asset: str = "data", n: int = 0) -> str:
    return f"http://testserver/collections/{cid}/items/{cid}-scene-{n}/assets/{asset}"


def test_items_point_local_assets_at_the_download_route(setup, store):
    client, _ = setup
    assets = client.get("/collections/open/items/open-scene-0").json()["assets"]
    assert assets["data"]["href"] == download("open")
    assert assets["gone"]["href"] == download("open", "gone")
    assert assets["remote"]["href"] == "https://mirror.example.org/scene.tif"
    assert assets["outside"]["href"] == str(store["outside"])  # not ours to serve
    for feature in client.get("/search", params={"collections": "open"}).json()["features"]:
        assert feature["assets"]["data"]["href"] == download("open", n=int(feature["id"][-1]))


def test_a_download_is_the_file_with_byte_ranges(setup, store):
    client, _ = setup
    r = client.get(download("open"))
    assert r.status_code == 200
    assert r.content == store["open"].read_bytes()
    assert r.headers["content-type"] == "image/tiff"
    assert r.headers["accept-ranges"] == "bytes"
    part = client.get(download("open"), headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == store["open"].read_bytes()[100:200]
    assert client.head(download("open")).headers["content-length"] == "4100"


@pytest.mark.parametrize("who", list(SEES))
def test_downloads_follow_the_collection_policy(setup, store, who):
    client, keys = setup
    for cid in POLICIES:
        r = client.get(download(cid), headers=as_(keys, who))
        if cid in SEES[who]:
            assert r.status_code == 200 and r.content == store[cid].read_bytes()
        else:
            assert r.status_code == 404, (who, cid)
            assert r.json()["code"] == "NotFoundError"
            assert store[cid].read_bytes() not in r.content


@pytest.mark.parametrize("who", ["revoked", "expired"])
def test_a_bad_key_cannot_download(setup, who):
    client, keys = setup
    r = client.get(download("open"), headers={"X-API-Key": keys[who]})
    assert r.status_code == 401 and who in r.json()["description"]


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/collections/open/items/nope/assets/data", "Item nope does not exist"),
        ("/collections/open/items/open-scene-0/assets/nope", "has no asset nope"),
        ("/collections/open/items/open-scene-0/assets/outside", "not downloadable"),
        ("/collections/open/items/open-scene-0/assets/escape", "not downloadable"),
        ("/collections/open/items/open-scene-0/assets/climb", "not downloadable"),
        ("/collections/open/items/open-scene-0/assets/gone", "not downloadable"),
        ("/collections/open/items/open-scene-0/assets/remote", "not downloadable"),
    ],
)
def test_what_cannot_be_downloaded_answers_404_naming_it(setup, store, path, says):
    client, _ = setup
    r = client.get(path)
    assert r.status_code == 404
    assert r.json()["code"] == "NotFoundError" and says in r.json()["description"]
    assert b"not an asset" not in r.content and str(store["root"]) not in r.text


def hrefs(document: dict) -> list[str]:
    """Every link and asset href of a search page or item."""
    found = [link["href"] for link in document.get("links", [])]
    for feature in document.get("features", [document]):
        found += [link["href"] for link in feature.get("links", [])]
        found += [asset["href"] for asset in feature.get("assets", {}).values()]
    return found


def test_a_key_given_in_the_query_travels_in_every_link_to_this_node(setup):
    client, keys = setup
    key = keys["partner A"]
    pages = [
        client.get("/search", params={"api_key": key, "collections": "thai", "limit": 1}),
        client.post("/search", params={"api_key": key}, json={"collections": ["thai"], "limit": 1}),
        client.get("/collections/thai/items/thai-scene-0", params={"api_key": key}),
    ]
    for page in pages:
        assert page.status_code == 200
        ours = [h for h in hrefs(page.json()) if h.startswith(("http://testserver", TILER))]
        assert ours and all(parse_qs(urlsplit(h).query)["api_key"] == [key] for h in ours)
        assert POLICY_PAGE in hrefs(page.json())  # someone else's server never gets the key
    next_link = next(link for link in pages[1].json()["links"] if link["rel"] == "next")
    assert next_link["href"].endswith(f"api_key={key}")
    followed = client.post(next_link["href"], json=next_link["body"])
    assert [f["id"] for f in followed.json()["features"]] == ["thai-scene-0"]
    data = pages[2].json()["assets"]["data"]["href"]
    assert client.get(data).status_code == 200  # the link alone is enough, as in QGIS
    assert client.get(data.split("?")[0]).status_code == 404


def test_header_keys_are_not_copied_into_links(setup):
    client, keys = setup
    page = client.get("/collections/open/items/open-scene-0", headers=as_(keys, "partner A"))
    assert not any("api_key" in h for h in hrefs(page.json()))
