"""Bad search input answers 400 with a STAC error naming the problem; none is a 500."""

import pytest

from tests.support.gf2_catalog import COLLECTION_ID


@pytest.fixture
def client(loaded_client):
    return loaded_client


ITEMS = f"/collections/{COLLECTION_ID}/items"
CASES = [
    # (method, path, query params, JSON body, words the description must contain)
    (
        "GET",
        "/search",
        {"filter": "eo:cloud_cover >>> 3", "filter-lang": "cql2-text"},
        None,
        "CQL2",
    ),
    ("GET", ITEMS, {"filter": "eo:cloud_cover <"}, None, "CQL2"),
    ("POST", "/search", None, {"filter": {"op": "frobnicate", "args": [1]}}, "frobnicate"),
    ("POST", "/search", None, {"filter": "eo:cloud_cover > 3"}, "filter"),
    ("GET", "/search", {"sortby": "-no_such_field"}, None, "no_such_field"),
    (
        "POST",
        "/search",
        None,
        {"sortby": [{"field": "properties.nope", "direction": "asc"}]},
        "nope",
    ),
    ("GET", ITEMS, {"sortby": "nope"}, None, "nope"),
    ("GET", "/search", {"bbox": "1,2,3,4,5"}, None, "bbox"),
    ("POST", "/search", None, {"bbox": [1, 2, 3, 4, 5]}, "bbox must have 4 or 6 numbers"),
    ("GET", "/search", {"datetime": "2024-06-01T00:00:00Z/2024-05-01T00:00:00Z"}, None, "datetime"),
    (
        "POST",
        "/search",
        None,
        {"datetime": "2024-06-01T00:00:00Z/2024-05-01T00:00:00Z"},
        "datetime",
    ),
    ("GET", ITEMS, {"datetime": "2024-06-01T00:00:00Z/2024-05-01T00:00:00Z"}, None, "datetime"),
    ("GET", "/search", {"limit": "1e9"}, None, "limit"),
    ("POST", "/search", None, {"limit": 1e9}, "limit"),
    ("GET", "/search", {"limit": "0"}, None, "limit"),
    ("POST", "/search", None, {"fields": None}, "fields"),
    ("GET", "/search", {"query": "not json"}, None, "query"),
    ("POST", "/search", None, {"query": {"gsd": {"near": 3}}}, "near"),
    ("GET", "/search", {"intersects": "not json"}, None, "intersects"),
]


@pytest.mark.parametrize(("method", "path", "params", "body", "says"), CASES)
def test_bad_input_is_a_400_stac_error(client, method, path, params, body, says):
    r = client.request(method, path, params=params, json=body)
    assert r.status_code == 400, r.text
    error = r.json()
    assert set(error) == {"code", "description"}, error
    assert says.lower() in error["description"].lower(), error


def test_limit_above_the_maximum_is_served_as_the_maximum(client):
    # OGC API Features: a limit above the maximum is not an error; the maximum applies.
    assert client.get("/search", params={"limit": 1_000_000}).status_code == 200
    assert client.post("/search", json={"limit": 1_000_000}).status_code == 200


def test_clients_cannot_set_pgstac_runtime_settings(client):
    r = client.post("/search", json={"conf": {"context": "on"}, "limit": 1, "count": False})
    assert r.status_code == 200 and "numberMatched" not in r.json()
