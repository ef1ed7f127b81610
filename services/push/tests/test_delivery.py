"""The worker: matching items reach the receiver once, signed; failures are retried with backoff,
then dead-lettered; a failing endpoint pauses its subscription; test events; the Atom feed."""

import time

import asyncpg
import feedparser
import pytest
from fastapi.testclient import TestClient

from csdr_push import deliveries
from csdr_push.app import create_app
from csdr_push.settings import Settings
from services.push.tests.samples import SECRET, stac_item

pytestmark = pytest.mark.slow  # seconds per test (scenes, apps): make test, not test-fast

FAST = {
    "allow_private_targets": True,
    "poll_interval_s": 0.2,
    "backoff_base_s": 0.05,
    "backoff_max_s": 0.2,
    "catalog_url": "http://stac.example",
    "tiler_url": "http://tiles.example",
}


@pytest.fixture
def client(pg_env, keys):
    with TestClient(create_app(Settings(**FAST)), headers={"X-API-Key": keys["partner A"]}) as c:
        yield c


def subscribe(client, receiver, **extra):
    r = client.post(
        "/subscriptions",
        json={
            "bbox": [118.5, 37.5, 119.5, 38.5],
            "filter": {"op": "<=", "args": [{"property": "eo:cloud_cover"}, 20]},
            "webhook": {"url": receiver.url, "secret": SECRET},
            **extra,
        },
    )
    assert r.status_code == 201, r.text
    return r.json()


def wait_until(predicate, timeout_s=30):
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


def test_matching_items_are_delivered_once_signed_as_cloudevents(client, receiver, upsert):
    sub = subscribe(client, receiver)
    upsert(stac_item("match", **{"eo:cloud_cover": 5}))
    upsert(stac_item("cloudy", **{"eo:cloud_cover": 60}))
    upsert(stac_item("far", lon=10, lat=10, **{"eo:cloud_cover": 5}))
    upsert(stac_item("match", **{"eo:cloud_cover": 6}))
    (created, updated) = receiver.wait_for(2, SECRET)
    time.sleep(1)  # nothing else arrives
    assert len(receiver.received) == 2
    assert [created["type"], updated["type"]] == ["org.csdr.item.created", "org.csdr.item.updated"]
    assert created["specversion"] == "1.0" and created["subject"] == "match"
    assert created["source"] == "http://stac.example/collections/gf1"
    assert receiver.received[0].headers["webhook-id"] == created["id"]
    assert receiver.received[0].headers["content-type"].startswith("application/cloudevents+json")
    item = created["data"]
    assert item["id"] == "match" and item["properties"]["platform"] == "GF-1"
    rels = {link["rel"]: link["href"] for link in item["links"]}
    assert rels["self"] == "http://stac.example/collections/gf1/items/match"
    assert rels["xyz"].startswith("http://tiles.example/collections/gf1/items/match/tiles/")
    deliveries = client.get(f"/subscriptions/{sub['id']}/deliveries").json()["deliveries"]
    assert {(d["status"], d["attempts"]) for d in deliveries} == {("delivered", 1)}
    assert {d["id"] for d in deliveries} == {created["id"], updated["id"]}


def test_a_tampered_body_does_not_verify(client, receiver, upsert):
    from standardwebhooks import Webhook, WebhookVerificationError

    subscribe(client, receiver)
    upsert(stac_item("match", **{"eo:cloud_cover": 5}))
    receiver.wait_for(1, SECRET)
    got = receiver.received[0]
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(got.body.replace(b"GF-1", b"GF-2"), got.headers)


def test_failures_are_retried_then_dead_lettered_and_redelivered(pg_env, keys, receiver, upsert):
    settings = Settings(**{**FAST, "max_attempts": 3, "pause_after_failing_s": 3600})
    with TestClient(create_app(settings), headers={"X-API-Key": keys["partner A"]}) as client:
        sub = subscribe(client, receiver)
        receiver.status = 503
        upsert(stac_item("match", **{"eo:cloud_cover": 5}))
        url = f"/subscriptions/{sub['id']}/deliveries"
        (dead,) = wait_until(lambda: client.get(f"{url}?status=dead").json()["deliveries"])
        assert dead["attempts"] == 3 and dead["last_status_code"] == 503
        assert "503" in dead["last_error"]
        assert len(receiver.received) == 3
        assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
        # backoff: the gaps between attempts grow (base 0.05 s, doubling, jittered to >= half)
        times = [r.at for r in receiver.received]
        assert times[2] - times[1] >= 0.05
        assert client.get(f"/subscriptions/{sub['id']}").json()["failing_since"] is not None

        receiver.status = 200
        r = client.post(f"{url}/{dead['id']}/retry")
        assert r.status_code == 202 and r.json()["status"] == "pending"
        wait_until(lambda: client.get(f"{url}?status=delivered").json()["deliveries"])
        assert receiver.received[-1].headers["webhook-id"] == dead["id"]
        assert client.get(f"/subscriptions/{sub['id']}").json()["failing_since"] is None
        assert client.post(f"{url}/{dead['id']}/retry").status_code == 404


def test_an_endpoint_that_keeps_failing_pauses_its_subscription(pg_env, keys, receiver, upsert):
    settings = Settings(**{**FAST, "max_attempts": 100, "pause_after_failing_s": 0.5})
    with TestClient(create_app(settings), headers={"X-API-Key": keys["partner A"]}) as client:
        sub = subscribe(client, receiver)
        receiver.status = 500
        upsert(stac_item("match", **{"eo:cloud_cover": 5}))
        paused = wait_until(
            lambda: (
                (s := client.get(f"/subscriptions/{sub['id']}").json())["status"] == "paused" and s
            )
        )
        assert "endpoint failing since" in paused["paused_reason"]
        assert "HTTP 500" in paused["paused_reason"]
        sent = len(receiver.received)
        time.sleep(1)
        assert len(receiver.received) == sent  # paused: nothing is sent
        receiver.status = 204
        client.post(f"/subscriptions/{sub['id']}/resume")
        receiver.wait_for(1, SECRET)
        wait_until(
            lambda: client.get(f"/subscriptions/{sub['id']}/deliveries?status=delivered").json()[
                "deliveries"
            ]
        )


def test_test_event_is_signed_and_tracked(client, receiver):
    sub = subscribe(client, receiver)
    r = client.post(f"/subscriptions/{sub['id']}/test")
    assert r.status_code == 202 and r.json()["type"] == "org.csdr.test"
    wait_until(lambda: receiver.received)
    (event,) = receiver.events(SECRET)
    assert event["type"] == "org.csdr.test" and event["id"] == r.json()["id"]


def test_atom_feed_lists_the_latest_matching_items(client, receiver, upsert):
    sub = subscribe(client, receiver)
    for n in range(3):
        upsert(stac_item(f"scene-{n}", **{"eo:cloud_cover": n}))
    upsert(stac_item("cloudy", **{"eo:cloud_cover": 90}))
    receiver.wait_for(3, SECRET)
    r = client.get(f"/subscriptions/{sub['id']}/feed")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/atom+xml")
    parsed = feedparser.parse(r.content)
    assert not parsed.bozo, parsed.bozo_exception
    assert parsed.feed.id == f"urn:uuid:{sub['id']}"
    assert [e.title for e in parsed.entries] == [
        "scene-2 (created)",
        "scene-1 (created)",
        "scene-0 (created)",
    ]
    alternate = {link.rel: link.href for link in parsed.entries[0].links}["alternate"]
    assert alternate == "http://stac.example/collections/gf1/items/scene-2"
    assert "cloud cover 2" in parsed.entries[0].summary


@pytest.fixture
def dns(monkeypatch):
    """A name server for `hooks.partner.example` whose answer the test changes."""
    import ipaddress

    from csdr_push import targets

    answers = {"hooks.partner.example": {ipaddress.ip_address("93.184.216.34")}}
    real = targets._resolve

    async def resolve(host, port):
        return answers[host] if host in answers else await real(host, port)

    monkeypatch.setattr(targets, "_resolve", resolve)
    return answers


def test_a_webhook_host_rebound_to_loopback_after_subscribing_gets_nothing(
    pg_env, keys, receiver, upsert, dns
):
    import ipaddress

    settings = Settings(**{**FAST, "allow_private_targets": False})
    with TestClient(create_app(settings), headers={"X-API-Key": keys["partner A"]}) as client:
        url = f"http://hooks.partner.example:{receiver.port}/hook"
        r = client.post(
            "/subscriptions",
            json={"bbox": [118.5, 37.5, 119.5, 38.5], "webhook": {"url": url, "secret": SECRET}},
        )
        assert r.status_code == 201, r.text  # public when checked
        dns["hooks.partner.example"] = {ipaddress.ip_address("127.0.0.1")}  # the receiver's
        upsert(stac_item("match", **{"eo:cloud_cover": 5}))
        deliveries = f"/subscriptions/{r.json()['id']}/deliveries"
        failed = wait_until(
            lambda: [d for d in client.get(deliveries).json()["deliveries"] if d["last_error"]]
        )
        assert "refused at send" in failed[0]["last_error"]
        assert "127.0.0.1" in failed[0]["last_error"]
        assert receiver.received == []


def test_a_delivery_goes_to_the_address_checked_with_the_url_host(
    pg_env, keys, receiver, upsert, dns
):
    import ipaddress

    dns["hooks.partner.example"] = {ipaddress.ip_address("127.0.0.1")}
    with TestClient(create_app(Settings(**FAST)), headers={"X-API-Key": keys["partner A"]}) as c:
        url = f"http://hooks.partner.example:{receiver.port}/hook"
        r = c.post("/subscriptions", json={"webhook": {"url": url, "secret": SECRET}})
        assert r.status_code == 201, r.text
        upsert(stac_item("match", **{"eo:cloud_cover": 5}))
        receiver.wait_for(1, SECRET)
    assert receiver.received[0].headers["host"] == f"hooks.partner.example:{receiver.port}"


def test_a_dropped_connection_of_any_kind_does_not_end_the_worker(
    pg_env, keys, receiver, upsert, monkeypatch
):
    """asyncpg raises InterfaceError, not a PostgresError, for a connection closed mid-query
    (PostgreSQL restarted): the worker's loops log it and go on, and the item still arrives."""
    real_claim = deliveries.claim
    failures = []

    async def claim(*args, **kwargs):
        if len(failures) < 2:
            failures.append(1)
            raise asyncpg.InterfaceError("connection was closed in the middle of operation")
        return await real_claim(*args, **kwargs)

    monkeypatch.setattr(deliveries, "claim", claim)
    with TestClient(create_app(Settings(**FAST)), headers={"X-API-Key": keys["partner A"]}) as c:
        subscribe(c, receiver)
        upsert(stac_item("after-drop", **{"eo:cloud_cover": 5}))
        (created,) = receiver.wait_for(1, SECRET)
    assert created["subject"] == "after-drop" and len(failures) == 2
