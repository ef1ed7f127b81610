"""ETag and 304 tied to the item's version; a re-ingest is seen on the very next request."""

from __future__ import annotations

from dataclasses import replace

import psycopg
import pytest
from fastapi.testclient import TestClient

from csdr_tiler.app import create_app
from csdr_tiler.settings import Settings
from services.tiler.tests.scenes import SMALL, decode, ingest

pytestmark = pytest.mark.slow  # seconds per test (scenes, apps): make test, not test-fast


@pytest.fixture
def client(pg_env):
    with TestClient(create_app(Settings())) as c:
        yield c


def test_etag_304_and_a_reingest_changes_tiles_at_once(client, tmp_path):
    with psycopg.connect(autocommit=True) as conn:
        first = ingest(conn, tmp_path / "a", "gf2-cache")
    tile = first.centre_tile(13)
    url = f"{first.url}/presets/true-color/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"

    raw_url = f"{first.url}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
    raw_params = {"assets": "data|bidx=4", "rescale": "0,5000"}
    raw_before = client.get(raw_url, params=raw_params)
    r = client.get(url)
    assert r.status_code == 200 and r.headers["cache-control"]
    etag = r.headers["etag"]
    again = client.get(url)
    assert again.headers["etag"] == etag and again.content == r.content
    not_modified = client.get(url, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified.headers["etag"] == etag
    # Another rendering of the same item has its own tag.
    other = client.get(url.replace("true-color", "false-color"))
    assert other.headers["etag"] != etag

    # Re-ingest the same scene id with other pixels (another seed): new statistics, new COG.
    with psycopg.connect(autocommit=True) as conn:
        second = ingest(
            conn, tmp_path / "b", "gf2-cache", scene=replace(SMALL, seed=9), name=first.item["id"]
        )
    assert second.item["id"] == first.item["id"]
    fresh = client.get(url, headers={"If-None-Match": etag})
    assert fresh.status_code == 200
    assert fresh.headers["etag"] != etag
    assert (decode(fresh.content) != decode(r.content)).any()
    # The raw titiler route reads the new item's COG too (titiler-pgstac's own item lookup kept
    # the old item, and so the old COG, for 5 minutes).
    raw_after = client.get(raw_url, params=raw_params)
    assert (decode(raw_after.content) != decode(raw_before.content)).any()


def test_unknown_item_is_404_not_cached(client):
    r = client.get("/collections/nope/items/nope/presets/true-color/WebMercatorQuad/tilejson.json")
    assert r.status_code == 404
    assert "no item 'nope'" in r.json()["detail"]
