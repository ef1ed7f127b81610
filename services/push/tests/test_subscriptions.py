"""The subscriptions API: create, read, list, replace, pause, resume, delete, and every bad input
answered 400 with the reason."""

import pytest
from fastapi.testclient import TestClient

from conftest import free_port
from csdr_push.app import create_app
from csdr_push.settings import Settings
from services.push.tests.samples import SECRET

LOW_CLOUD = {"op": "<=", "args": [{"property": "eo:cloud_cover"}, 20]}


@pytest.fixture
def client(pg_env, keys):
    settings = Settings(allow_private_targets=True, worker=False)
    with TestClient(create_app(settings), headers={"X-API-Key": keys["partner A"]}) as c:
        yield c


def body(**overrides):
    hook = {"url": f"http://127.0.0.1:{free_port()}/hook", "secret": SECRET}
    return {
        "collections": ["gf1"],
        "bbox": [118.5, 37.5, 119.5, 38.5],
        "filter": LOW_CLOUD,
        "webhook": hook,
        **overrides,
    }


def test_create_read_list_replace_delete(client):
    r = client.post("/subscriptions", json=body())
    assert r.status_code == 201, r.text
    sub = r.json()
    assert r.headers["location"].endswith(f"/subscriptions/{sub['id']}")
    assert sub["status"] == "active" and sub["owner"] == "GISTDA"
    assert sub["bbox"] == [118.5, 37.5, 119.5, 38.5] and sub["filter"] == LOW_CLOUD
    assert "secret" not in sub["webhook"]
    assert client.get(f"/subscriptions/{sub['id']}").json() == sub
    assert [s["id"] for s in client.get("/subscriptions").json()["subscriptions"]] == [sub["id"]]

    area = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}
    r = client.put(
        f"/subscriptions/{sub['id']}",
        json=body(bbox=None, intersects=area, filter="platform = 'GF-2'"),
    )
    assert r.status_code == 200, r.text
    assert r.json()["intersects"] == area and "bbox" not in r.json() or r.json()["bbox"] is None
    assert r.json()["filter"] == {"op": "=", "args": [{"property": "platform"}, "GF-2"]}

    assert client.post(f"/subscriptions/{sub['id']}/pause").json()["status"] == "paused"
    resumed = client.post(f"/subscriptions/{sub['id']}/resume").json()
    assert resumed["status"] == "active" and resumed["paused_reason"] is None
    assert client.delete(f"/subscriptions/{sub['id']}").status_code == 204
    r = client.get(f"/subscriptions/{sub['id']}")
    assert r.status_code == 404 and r.json()["code"] == "NotFound"


@pytest.mark.parametrize(
    ("overrides", "code", "reason"),
    [
        ({"filter": {"op": "<=", "args": []}}, "InvalidFilter", "not valid CQL2"),
        ({"filter": "eo:cloud_cover <"}, "InvalidFilter", "not valid CQL2"),
        ({"filter": {"op": "bogus", "args": [{"property": "x"}, 1]}}, "InvalidFilter", "bogus"),
        (
            {"webhook": {"url": "ftp://example.org/x", "secret": SECRET}},
            "InvalidWebhook",
            "http or https",
        ),
        (
            {"webhook": {"url": "file:///etc/passwd", "secret": SECRET}},
            "InvalidWebhook",
            "http or https",
        ),
        (
            {"webhook": {"url": "http://127.0.0.1:8081/collections", "secret": SECRET}},
            "InvalidWebhook",
            "this node itself",
        ),
        (
            {"webhook": {"url": "http://localhost:8084/subscriptions", "secret": SECRET}},
            "InvalidWebhook",
            "this node itself",
        ),
        (
            {"webhook": {"url": "http://127.0.0.1:9/x", "secret": "not-a-secret"}},
            "InvalidWebhook",
            "whsec_",
        ),
        (
            {"webhook": {"url": "http://127.0.0.1:9/x", "secret": "whsec_@@@notbase64"}},
            "InvalidWebhook",
            "base64",
        ),
        (
            {"webhook": {"url": "http://127.0.0.1:9/x", "secret": "whsec_c2hvcnQ="}},
            "InvalidWebhook",
            "24 to 64",
        ),
        ({"bbox": [119, 37, 118, 38]}, "InvalidSubscription", "antimeridian"),
        ({"bbox": [118, 38, 119, 37]}, "InvalidSubscription", "south <= north"),
        ({"bbox": [1, 2, 3]}, "InvalidSubscription", "4 numbers"),
        (
            {
                "bbox": None,
                "intersects": {
                    "type": "Polygon",
                    "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]],
                },
            },
            "InvalidSubscription",
            "Self-intersection",
        ),
        ({"bbox": None, "intersects": {"type": "Nope"}}, "InvalidSubscription", "GeoJSON"),
        ({"intersects": {"type": "Point", "coordinates": [1, 2]}}, "InvalidRequest", "not both"),
        ({"collections": []}, "InvalidSubscription", "at least one"),
        ({"webhook": {"url": "http://127.0.0.1:9/x"}}, "InvalidRequest", "webhook.secret"),
    ],
)
def test_bad_input_is_400_with_the_reason(client, overrides, code, reason):
    r = client.post("/subscriptions", json=body(**overrides))
    assert r.status_code == 400, r.text
    assert r.json()["code"] == code and reason in r.json()["description"], r.json()


def test_private_targets_are_refused_unless_allowed(pg_env, keys):
    app = create_app(Settings(worker=False))
    with TestClient(app, headers={"X-API-Key": keys["partner A"]}) as client:
        hook = {"url": f"http://127.0.0.1:{free_port()}/hook", "secret": SECRET}
        r = client.post("/subscriptions", json=body(webhook=hook))
        assert r.status_code == 400 and "private" in r.json()["description"]
        r = client.post("/subscriptions", json=body(webhook={**hook, "url": "http://10.1.2.3/"}))
        assert r.status_code == 400 and "10.1.2.3" in r.json()["description"]


def test_unknown_ids_are_404(client):
    missing = "00000000-0000-0000-0000-000000000000"
    for method, path in [
        ("get", ""),
        ("delete", ""),
        ("post", "/pause"),
        ("post", "/resume"),
        ("post", "/test"),
        ("get", "/deliveries"),
        ("get", "/feed"),
    ]:
        r = getattr(client, method)(f"/subscriptions/{missing}{path}")
        assert r.status_code == 404 and r.json()["code"] == "NotFound", (method, path, r.text)
    assert client.get("/subscriptions/not-a-uuid").status_code == 400


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
