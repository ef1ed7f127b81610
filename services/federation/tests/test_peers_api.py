"""GET /federation/peers (admin only, never a peer's key) and the wake-up doorbell."""

import pytest
from fastapi.testclient import TestClient

from csdr_access.peers import add_peer
from csdr_federation.app import create_app
from csdr_federation.settings import Settings


@pytest.fixture
def client(pg_env, keys, db):
    add_peer(db, "main", "http://127.0.0.1:9", "csdr_abcd1234_s3cret", "test", ["gf1"])
    settings = Settings(worker=False, node_name="la")
    with TestClient(create_app(settings), headers={"X-API-Key": keys["admin"]}) as c:
        yield c


def test_the_status_lists_each_peer_without_its_key(client):
    r = client.get("/federation/peers")
    assert r.status_code == 200, r.text
    (peer,) = r.json()["peers"]
    assert peer["name"] == "main" and peer["collections"] == ["gf1"]
    assert peer["status"] == "active" and peer["cursor"] is None and not peer["at_head"]
    assert peer["asset_copies"] == {}
    assert "s3cret" not in r.text


def test_the_status_counts_asset_copies_by_status(client, db):
    for n, status in enumerate(["queued", "queued", "failed"]):
        db.execute(
            "INSERT INTO csdr.federation_assets"
            " (collection, item_id, asset, peer, source, path, status)"
            " VALUES ('gf1', %s, 'data', 'main', 'http://o/x', '/tmp/x', %s)",
            (f"S{n}", status),
        )
    (peer,) = client.get("/federation/peers").json()["peers"]
    assert peer["asset_copies"] == {"queued": 2, "failed": 1}


def test_the_status_needs_an_admin_key(client, keys):
    r = client.get("/federation/peers", headers={"X-API-Key": keys["partner"]})
    assert r.status_code == 403 and "admin" in r.json()["description"]


def test_wake_names_a_registered_peer(client):
    assert client.post("/federation/peers/main/wake").status_code == 202
    r = client.post("/federation/peers/nobody/wake")
    assert r.status_code == 404 and r.json()["code"] == "NotFound"
