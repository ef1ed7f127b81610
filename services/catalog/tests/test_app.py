import psycopg
import pytest
from fastapi.testclient import TestClient

from csdr_catalog.app import create_app
from csdr_catalog.settings import Settings


@pytest.fixture
def client(pg_env):
    with TestClient(create_app(Settings())) as c:
        yield c


def test_landing_page_has_title_description_and_search_extensions(client):
    landing = client.get("/").json()
    assert landing["title"] == "CSDR Node"
    assert "Gaofen" in landing["description"]
    conforms = " ".join(landing["conformsTo"])
    for part in (
        "item-search#filter",
        "item-search#sort",
        "item-search#fields",
        "item-search#query",
        "cql2-text",
    ):
        assert part in conforms, part


def test_transactions_are_off_by_default(client):
    r = client.post("/collections", json={"id": "x"})
    assert r.status_code == 405


def test_transactions_on_when_enabled(pg_env):
    from csdr_access.admin import add_org, issue_key

    with psycopg.connect(autocommit=True) as conn:
        add_org(conn, "Writers", "CN", "main", "test")
        key = issue_key(conn, "Writers", ["ingest"], "test")[0]
    with TestClient(create_app(Settings(transactions=True)), headers={"X-API-Key": key}) as c:
        collection = {
            "type": "Collection",
            "id": "t1",
            "stac_version": "1.1.0",
            "description": "d",
            "license": "other",
            "links": [],
            "extent": {
                "spatial": {"bbox": [[0, 0, 1, 1]]},
                "temporal": {"interval": [["2020-01-01T00:00:00Z", None]]},
            },
        }
        assert c.post("/collections", json=collection).status_code in (200, 201)
        assert c.get("/collections/t1").json()["id"] == "t1"


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["pgstac"]


def test_readiness_is_503_when_database_is_gone(client, pg_cluster, pg_env):
    import psycopg

    with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{pg_env["PGDATABASE"]}" WITH (FORCE)')
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 503


def test_cors_origins_are_configurable(pg_env, monkeypatch):
    monkeypatch.setenv("CSDR_CATALOG_CORS_ORIGINS", "https://portal.example.org")
    with TestClient(create_app()) as c:
        r = c.get("/", headers={"Origin": "https://portal.example.org"})
        assert r.headers["access-control-allow-origin"] == "https://portal.example.org"
        r = c.get("/", headers={"Origin": "https://evil.example.com"})
        assert "access-control-allow-origin" not in r.headers
