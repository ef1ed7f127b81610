import time

import pytest
from fastapi.testclient import TestClient

from csdr_ingest.app import create_app
from tests.support.time_zones import beijing_hj_package


@pytest.fixture
def client(pg_env, settings, ingest_key):
    app = create_app(settings.model_copy(update={"poll_interval_s": 0.2}))
    with TestClient(app, headers={"X-API-Key": ingest_key}) as c:
        yield c


def wait_for(client, job_id, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.2)
    raise TimeoutError(job)


def test_job_publishes_the_item(client, scene):
    r = client.post("/jobs", json={"source": str(scene), "collection": "demo"})
    assert r.status_code == 202
    assert r.json()["status"] == "queued"
    job = wait_for(client, r.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["items"] == [{"id": "small_scene", "collection": "demo"}]
    assert job["error"] is None


def test_corrupt_input_fails_with_a_reason(client, scene, tmp_path):
    corrupt = tmp_path / "broken.tif"
    corrupt.write_bytes(scene.read_bytes()[:30_000])
    job = wait_for(client, client.post("/jobs", json={"source": str(corrupt)}).json()["id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "SourceUnreadable"
    assert "broken.tif" in job["error"]["description"]


def test_bad_requests_say_what_is_wrong(client):
    r = client.post("/jobs", json={"source": "relative/path.tif"})
    assert r.status_code == 400
    assert r.json()["code"] == "InvalidRequest" and "absolute" in r.json()["description"]
    r = client.post("/jobs", json={"source": "/x.tif", "collection": "bad/id"})
    assert r.status_code == 400 and "collection" in r.json()["description"]
    r = client.get("/jobs/00000000-0000-0000-0000-000000000000")
    assert r.status_code == 404 and r.json()["code"] == "NotFound"


def test_health_and_readiness(client, pg_cluster, pg_env):
    import psycopg

    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{pg_env["PGDATABASE"]}" WITH (FORCE)')
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 503


def test_job_option_publishes_a_package_whose_time_the_sun_contradicts(client, tmp_path):
    source = str(beijing_hj_package(tmp_path / "in"))
    refused = wait_for(client, client.post("/jobs", json={"source": source}).json()["id"])
    assert refused["status"] == "failed" and refused["items"] == []
    assert refused["error"]["code"] == "TimeContradictsSun"
    assert "read as UTC" in refused["error"]["description"]
    body = {"source": source, "accept_sun_disagreement": True}
    accepted = wait_for(client, client.post("/jobs", json=body).json()["id"])
    assert accepted["status"] == "succeeded", accepted
    assert accepted["items"] == [
        {"id": "HJ1A_CCD2_20121204_L20000902055", "collection": "hj1a-ccd"}
    ]
