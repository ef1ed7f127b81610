"""Collection and item documents carry an ETag and Cache-Control; a matching If-None-Match is a
304; responses are compressed for clients that accept it."""

import pytest

from tests.support.gf2_catalog import COLLECTION_ID, SCENES

ITEM = f"/collections/{COLLECTION_ID}/items/{SCENES[0][0]}"


@pytest.mark.parametrize("path", ["/collections", f"/collections/{COLLECTION_ID}", ITEM])
def test_documents_revalidate_with_etag(loaded_client, path):
    first = loaded_client.get(path)
    assert first.status_code == 200 and first.headers["cache-control"].startswith("public")
    etag = first.headers["etag"]
    again = loaded_client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    stale = loaded_client.get(path, headers={"If-None-Match": 'W/"other"'})
    assert stale.status_code == 200 and stale.json() == first.json()


def test_searches_are_not_tagged(loaded_client):
    assert "etag" not in loaded_client.get("/search").headers


def test_json_is_compressed_when_accepted(loaded_client):
    r = loaded_client.get("/search", headers={"Accept-Encoding": "br"})
    assert r.headers["content-encoding"] == "br" and r.json()["type"] == "FeatureCollection"
