"""POST /jobs and GET /jobs/{id} need a key with the ingest scope: 401 with the reason without
one or with a bad one, 403 for a key without the scope."""

import psycopg
import pytest
from fastapi.testclient import TestClient

from csdr_access.admin import issue_key, revoke_key
from csdr_ingest.app import create_app

MISSING_JOB = "/jobs/00000000-0000-0000-0000-000000000000"


@pytest.fixture
def app(pg_env, settings, ingest_key):
    with TestClient(create_app(settings.model_copy(update={"access_ttl_s": 0}))) as c:
        yield c


@pytest.fixture
def other_keys(ingest_key):
    """A read-only key, an admin key and a revoked ingest key of the same organisation."""
    with psycopg.connect(autocommit=True) as conn:
        read = issue_key(conn, "Main node", ["read"], "test")[0]
        admin = issue_key(conn, "Main node", ["admin"], "test")[0]
        revoked, prefix = issue_key(conn, "Main node", ["ingest"], "test")
        revoke_key(conn, prefix, "test")
    return {"read": read, "admin": admin, "revoked": revoked}


def test_jobs_need_a_valid_key(app, scene):
    body = {"source": str(scene), "collection": "demo"}
    for headers, reason in [
        ({}, "needs an API key"),
        ({"X-API-Key": "csdr_deadbeef_" + "x" * 43}, "not valid"),
        ({"Authorization": "Bearer not-a-key"}, "not valid"),
    ]:
        for r in (
            app.post("/jobs", json=body, headers=headers),
            app.get(MISSING_JOB, headers=headers),
        ):
            assert r.status_code == 401, r.text
            assert r.json()["code"] == "Unauthorized" and reason in r.json()["description"]
            assert r.headers["www-authenticate"] == "Bearer"
    with psycopg.connect() as conn:  # nothing was queued
        assert conn.execute("SELECT count(*) FROM csdr.ingest_jobs").fetchone() == (0,)


def test_the_ingest_scope_is_required(app, scene, ingest_key, other_keys):
    body = {"source": str(scene), "collection": "demo"}
    r = app.post("/jobs", json=body, headers={"X-API-Key": other_keys["read"]})
    assert r.status_code == 403 and "lacks the ingest scope" in r.json()["description"]
    assert app.get(MISSING_JOB, headers={"X-API-Key": other_keys["read"]}).status_code == 403
    r = app.post("/jobs", json=body, headers={"X-API-Key": other_keys["revoked"]})
    assert r.status_code == 401 and "revoked" in r.json()["description"]
    r = app.post("/jobs", json=body, headers={"Authorization": f"Bearer {ingest_key}"})
    assert r.status_code == 202, r.text
    r = app.get(f"/jobs/{r.json()['id']}", params={"api_key": other_keys["admin"]})
    assert r.status_code == 200 and r.json()["source"] == str(scene)
