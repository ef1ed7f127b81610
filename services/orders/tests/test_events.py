"""Order progress reaches the organisation's webhooks through push: accepted, item.succeeded
and completed (item.failed when production fails), each a CloudEvent signed per Standard
Webhooks that verifies with the subscription's secret, one per webhook URL."""

import time

import pytest
from fastapi.testclient import TestClient

from conftest import free_port
from csdr_push.app import create_app as create_push
from csdr_push.settings import Settings as PushSettings
from services.orders.tests.samples import add_offline, auth, order_of
from services.push.tests.receiver import Receiver
from services.push.tests.samples import SECRET

pytestmark = pytest.mark.slow  # seconds per test (scenes, apps): make test, not test-fast


@pytest.fixture
def receiver():
    r = Receiver(free_port()).start()
    yield r
    r.stop()


def test_webhook_receives_accepted_item_succeeded_completed(client, scenes, keys, receiver):
    settings = PushSettings(allow_private_targets=True, poll_interval_s=0.1)
    with TestClient(create_push(settings), headers=auth(keys["thailand"])) as push:
        for _ in range(2):  # two subscriptions, one webhook: one event each
            subscription = {
                "bbox": [0, 0, 1, 1],
                "webhook": {"url": receiver.url, "secret": SECRET},
            }
            assert push.post("/subscriptions", json=subscription).status_code == 201
        order = client.post("/orders", json=order_of("S00"), headers=auth(keys["thailand"]))
        assert order.status_code == 201
        client.post("/orders", json=order_of("S01"), headers=auth(keys["bangladesh"]))
        deadline = time.monotonic() + 30
        while len(receiver.received) < 3:
            assert time.monotonic() < deadline, receiver.received
            time.sleep(0.05)
        time.sleep(0.5)  # nothing more arrives: not the other organisation's, no duplicate
        events = receiver.events(SECRET)  # every signature verifies, or this raises
    assert len(events) == 3
    events.sort(key=lambda e: e["data"]["sequence"])
    assert [e["type"] for e in events] == [
        "org.csdr.order.accepted",
        "org.csdr.order.item.succeeded",
        "org.csdr.order.completed",
    ]
    assert {e["data"]["order"] for e in events} == {order.json()["id"]}
    assert events[1]["data"]["item"] == "S00" and events[2]["data"]["status"] == "succeeded"


def test_failed_production_sends_item_failed_then_completed(
    make_client, db, scenes, keys, receiver
):
    add_offline(db, "OFF1", "/archive/OFF1.tar.gz")
    client = make_client(worker=True)
    settings = PushSettings(allow_private_targets=True, poll_interval_s=0.1)
    with TestClient(create_push(settings), headers=auth(keys["thailand"])) as push:
        subscription = {"bbox": [0, 0, 1, 1], "webhook": {"url": receiver.url, "secret": SECRET}}
        assert push.post("/subscriptions", json=subscription).status_code == 201
        order = client.post("/orders", json=order_of("OFF1"), headers=auth(keys["thailand"]))
        db.execute(
            "UPDATE csdr.ingest_jobs SET status = 'failed', finished_at = now(),"
            ' error = \'{"code": "RpcMissing", "description": "no RPC for OFF1"}\''
        )
        deadline = time.monotonic() + 30
        while len(receiver.received) < 3:
            assert time.monotonic() < deadline, receiver.received
            time.sleep(0.05)
        events = sorted(receiver.events(SECRET), key=lambda e: e["data"]["sequence"])
    assert [e["type"] for e in events] == [
        "org.csdr.order.accepted",
        "org.csdr.order.item.failed",
        "org.csdr.order.completed",
    ]
    assert events[1]["data"]["reason"] == "production failed: no RPC for OFF1"
    assert events[2]["data"]["status"] == "failed"
    assert order.json()["id"] == events[2]["data"]["order"]
