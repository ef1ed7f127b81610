"""The demo collection `make up` publishes: a newcomer, QGIS's STAC browser or a harvester reads a
title, a description, keywords, a license and providers, from the STAC API, valid STAC 1.1."""

import psycopg
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from csdr_catalog.app import create_app
from csdr_catalog.settings import Settings
from csdr_ingest.pgstac import new_collection
from csdr_ingest.synthetic import DEMO_COLLECTION
from infra.local.node import publish_demo_collection
from tests.e2e.catalog_scenes import conninfo
from tests.support.cresda_checks import COLLECTION_SCHEMA, validate

DESCRIBED = ("title", "description", "keywords", "license", "providers")


def served_collection(pg_env: dict[str, str]) -> dict:
    with TestClient(create_app(Settings())) as client:
        r = client.get(f"/collections/{DEMO_COLLECTION}")
        assert r.status_code == 200, r.text
        found = client.get("/collections", params={"q": "delta"}).json()["collections"]
        assert [c["id"] for c in found] == [DEMO_COLLECTION]
        return r.json()


def test_the_demo_collection_is_described_for_whoever_reads_it_first(pg_env):
    publish_demo_collection(conninfo(pg_env))
    collection = served_collection(pg_env)
    assert collection["title"] != DEMO_COLLECTION and "Yellow River delta" in collection["title"]
    assert "synthetic" in collection["description"] and len(collection["description"]) > 200
    assert {"demo", "synthetic", "China"} <= set(collection["keywords"])
    assert collection["license"] == "CC0-1.0"
    assert collection["providers"][0]["name"] == "CSDR Node"
    assert "producer" in collection["providers"][0]["roles"]
    validate(collection, COLLECTION_SCHEMA)


def test_a_demo_collection_from_an_older_node_is_described_and_keeps_its_extent(pg_env):
    """A data directory from before: the collection ingest created (its id as title), with the
    extent of the scenes already in it."""
    old = new_collection(DEMO_COLLECTION, "other")
    old["extent"]["spatial"]["bbox"] = [[118.7, 37.6, 119.2, 38.0]]
    with psycopg.connect(conninfo(pg_env), autocommit=True) as conn:
        conn.execute("SELECT pgstac.create_collection(%s)", (Jsonb(old),))
    publish_demo_collection(conninfo(pg_env))
    publish_demo_collection(conninfo(pg_env))  # again: `make up` is idempotent
    collection = served_collection(pg_env)
    assert collection["extent"]["spatial"]["bbox"] == [[118.7, 37.6, 119.2, 38.0]]
    assert collection["title"] != DEMO_COLLECTION and collection["license"] == "CC0-1.0"
    assert all(collection[k] for k in DESCRIBED)
