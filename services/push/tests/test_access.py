"""Push under access control: keys on every route, each organisation sees only its own
subscriptions, a subscription names only collections its owner may see, and every delivery, feed
entry and API answer follows the collection policies as they are when the delivery is sent."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import date, timedelta

import feedparser
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from conftest import free_port
from csdr_access.admin import issue_key, revoke_key, set_policy
from csdr_push.app import create_app
from csdr_push.settings import Settings
from services.push.tests.receiver import Receiver
from services.push.tests.samples import COLLECTION, ORGS, SECRET, stac_item
from tests.access_principals import POLICIES
from tests.access_principals import SEES as MATRIX

pytestmark = pytest.mark.slow  # seconds per test (scenes, apps): make test, not test-fast

# Owners of subscriptions hold keys: every principal of the matrix but the anonymous one.
SEES = {who: sees for who, sees in MATRIX.items() if who != "anonymous"}
FAST = {
    "allow_private_targets": True,
    "poll_interval_s": 0.2,
    "backoff_base_s": 0.05,
    "backoff_max_s": 0.2,
    "access_ttl_s": 0,
}


@pytest.fixture
def policies(db: psycopg.Connection, keys: dict[str, str]) -> psycopg.Connection:
    """The four collections, each under its policy (`thai`: partner A only)."""
    for cid, policy in POLICIES.items():
        db.execute("SELECT pgstac.create_collection(%s)", (Jsonb({**COLLECTION, "id": cid}),))
        set_policy(db, cid, policy, [ORGS["partner A"][0]] if policy == "partners" else [], "t")
    return db


@pytest.fixture
def app(pg_env: dict[str, str]) -> Iterator[TestClient]:
    """The push service with its worker; requests carry no key unless a test adds one."""
    with TestClient(create_app(Settings(**FAST))) as client:
        yield client


@pytest.fixture
def receivers() -> Iterator[dict[str, Receiver]]:
    """One webhook receiver per owner."""
    started = {who: Receiver(free_port()).start() for who in SEES}
    yield started
    for r in started.values():
        r.stop()


def as_(keys: dict[str, str], who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[who]}"}


def hook(receiver: Receiver | None = None) -> dict[str, str]:
    url = receiver.url if receiver else f"http://127.0.0.1:{free_port()}/hook"
    return {"url": url, "secret": SECRET}


def subscribe(client: TestClient, key: str, **body) -> dict:
    body.setdefault("webhook", hook())
    r = client.post("/subscriptions", json=body, headers={"X-API-Key": key})
    assert r.status_code == 201, r.text
    return r.json()


def write(db: psycopg.Connection, cid: str, item_id: str) -> None:
    with db.transaction():
        db.execute(
            "SELECT pgstac.upsert_item(%s)", (Jsonb({**stac_item(item_id), "collection": cid}),)
        )


def settled(db: psycopg.Connection, timeout_s: float = 30) -> None:
    """Wait until every event was fanned out and no delivery is pending: after that, every
    receiver holds all it will ever get."""
    deadline = time.monotonic() + timeout_s
    while db.execute(
        "SELECT (SELECT count(*) FROM csdr.item_events WHERE processed_at IS NULL)"
        " + (SELECT count(*) FROM csdr.deliveries WHERE status = 'pending')"
    ).fetchone() != (0,):
        assert time.monotonic() < deadline, "deliveries still pending"
        time.sleep(0.05)


def received_items(receiver: Receiver) -> list[str]:
    return [e["subject"] for e in receiver.item_events(SECRET)]


def test_keys_are_required_and_bad_ones_answer_401_with_the_reason(app, keys, db):
    revoked, prefix = issue_key(db, "GISTDA", ["read"], "t")
    revoke_key(db, prefix, "t")
    expired, prefix = issue_key(db, "GISTDA", ["read"], "t", date.today() + timedelta(1))
    db.execute(
        "UPDATE csdr.api_keys SET expires_at = now() - interval '1 hour' WHERE prefix = %s",
        (prefix,),
    )
    ingest_only = issue_key(db, "GISTDA", ["ingest"], "t")[0]
    for headers, reason in [
        ({}, "needs an API key"),
        ({"X-API-Key": "csdr_deadbeef_" + "x" * 43}, "not valid"),
        ({"X-API-Key": "nonsense"}, "not valid"),
        ({"Authorization": f"Bearer {revoked}"}, "revoked"),
        ({"Authorization": f"Bearer {expired}"}, "expired"),
    ]:
        for method, path in [("get", ""), ("post", ""), ("get", f"/{uuid.uuid4()}/feed")]:
            r = client_call(app, method, f"/subscriptions{path}", headers)
            assert r.status_code == 401, (headers, path, r.text)
            assert r.json()["code"] == "Unauthorized" and reason in r.json()["description"]
            assert r.headers["www-authenticate"] == "Bearer"
    r = app.get("/subscriptions", headers={"X-API-Key": ingest_only})
    assert r.status_code == 403 and "read scope" in r.json()["description"]
    for how in [
        {"headers": as_(keys, "partner A")},
        {"headers": {"X-API-Key": keys["partner A"]}},
        {"params": {"api_key": keys["partner A"]}},
    ]:
        assert app.get("/subscriptions", **how).status_code == 200, how
    assert app.get("/healthz").status_code == 200  # health needs no key


def client_call(client: TestClient, method: str, path: str, headers: dict[str, str]):
    if method == "post":
        return client.post(path, headers=headers, json={"webhook": hook()})
    return client.get(path, headers=headers)


def test_an_organisation_sees_and_changes_only_its_own_subscriptions(app, keys, db):
    a = subscribe(app, keys["partner A"], bbox=[118, 37, 119, 38])
    b = subscribe(app, keys["partner B"])
    db.execute(  # made before access control: no owner
        "INSERT INTO csdr.subscriptions (webhook_url, webhook_secret) VALUES (%s, %s)",
        (hook()["url"], SECRET),
    )
    assert a["owner"] == "GISTDA" and b["owner"] == "KenSpace"

    def listed(who: str) -> set[str]:
        r = app.get("/subscriptions", headers=as_(keys, who))
        return {s["id"] for s in r.json()["subscriptions"]}

    assert listed("partner A") == {a["id"]}
    assert listed("partner B") == {b["id"]}
    assert listed("registered") == set()
    assert {a["id"], b["id"]} < listed("admin") and len(listed("admin")) == 3

    other = as_(keys, "partner B")
    base = f"/subscriptions/{a['id']}"
    for method, path in [
        ("get", ""),
        ("put", ""),
        ("delete", ""),
        ("post", "/pause"),
        ("post", "/resume"),
        ("post", "/test"),
        ("get", "/deliveries"),
        ("post", f"/deliveries/{uuid.uuid4()}/retry"),
        ("get", "/feed"),
    ]:
        kwargs = {"json": {"webhook": hook()}} if method == "put" else {}
        r = getattr(app, method)(f"{base}{path}", headers=other, **kwargs)
        assert r.status_code == 404 and r.json()["code"] == "NotFound", (method, path, r.text)
        assert "GISTDA" not in r.text and "118" not in r.text
    mine = app.get(base, headers=as_(keys, "partner A")).json()
    assert mine["status"] == "active" and mine["bbox"] == [118, 37, 119, 38]  # untouched
    assert app.get(base, headers=as_(keys, "admin")).json()["owner"] == "GISTDA"
    r = app.post(f"{base}/pause", headers=as_(keys, "admin"))
    assert r.status_code == 200 and r.json()["owner"] == "GISTDA"  # an admin acts for the owner
    assert app.delete(base, headers=as_(keys, "partner A")).status_code == 204


def test_a_subscription_names_only_collections_its_owner_may_see(app, keys, policies):
    for who, sees in SEES.items():
        for cid in POLICIES:
            r = app.post(
                "/subscriptions",
                json={"collections": [cid], "webhook": hook()},
                headers=as_(keys, who),
            )
            if cid in sees:
                assert r.status_code == 201, (who, cid, r.text)
            else:
                assert r.status_code == 400, (who, cid, r.text)
                # Worded as for a collection that does not exist: existence is not revealed.
                assert r.json()["description"] == f"collections: no collection {cid!r} on this node"
    r = app.post(
        "/subscriptions",
        json={"collections": ["nowhere"], "webhook": hook()},
        headers=as_(keys, "partner B"),
    )
    assert r.json()["description"] == "collections: no collection 'nowhere' on this node"
    sub = subscribe(app, keys["partner B"], collections=["open"])
    r = app.put(
        f"/subscriptions/{sub['id']}",
        json={"collections": ["open", "thai"], "webhook": hook()},
        headers=as_(keys, "partner B"),
    )
    assert r.status_code == 400 and "'thai'" in r.json()["description"]


def test_each_owner_receives_exactly_what_it_may_see(app, keys, policies, receivers):
    db = policies
    subs = {}
    for who in SEES:  # every collection (none named), everywhere: only the policies filter
        subs[who] = subscribe(app, keys[who], webhook=hook(receivers[who]))
    for cid in POLICIES:
        write(db, cid, f"{cid}-scene")
    settled(db)
    for who, sees in SEES.items():
        got = received_items(receivers[who])
        assert sorted(got) == sorted(f"{cid}-scene" for cid in sees), who
        hidden = [f"{cid}-scene" for cid in set(POLICIES) - sees]
        headers = as_(keys, who)
        sid = subs[who]["id"]
        feed = app.get(f"/subscriptions/{sid}/feed", headers=headers)
        assert feed.status_code == 200
        titles = {e.title for e in feedparser.parse(feed.content).entries}
        assert titles == {f"{cid}-scene (created)" for cid in sees}, who
        deliveries = app.get(f"/subscriptions/{sid}/deliveries", headers=headers).json()
        assert len(deliveries["deliveries"]) == len(sees)
        answers = [r.body.decode() for r in receivers[who].received]
        answers += [feed.text, str(deliveries), app.get("/subscriptions", headers=headers).text]
        for text in answers:
            for item_id in hidden:
                assert item_id not in text, (who, item_id)


def test_access_is_judged_when_the_delivery_is_sent(app, keys, policies, receivers):
    db = policies
    inbox = receivers["partner A"]
    sub = subscribe(app, keys["partner A"], collections=["thai"], webhook=hook(inbox))
    headers = as_(keys, "partner A")
    app.post(f"/subscriptions/{sub['id']}/pause", headers=headers)
    write(db, "thai", "matched-while-visible")  # matched now, to be sent after resume
    deadline = time.monotonic() + 30
    while not app.get(f"/subscriptions/{sub['id']}/deliveries", headers=headers).json()[
        "deliveries"
    ]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    set_policy(db, "thai", "private", [], "t")  # the agreement ends before it is sent
    app.post(f"/subscriptions/{sub['id']}/resume", headers=headers)
    write(db, "thai", "after-private")
    settled(db)
    (withheld,) = app.get(f"/subscriptions/{sub['id']}/deliveries", headers=headers).json()[
        "deliveries"
    ]
    assert withheld["status"] == "withheld" and withheld["attempts"] == 0
    assert inbox.received == []
    assert (
        "matched-while-visible"
        not in app.get(f"/subscriptions/{sub['id']}/feed", headers=headers).text
    )

    set_policy(db, "thai", "partners", ["GISTDA"], "t")  # visible again: new items flow
    db.execute("SELECT pgstac.create_collection(%s)", (Jsonb({**COLLECTION, "id": "spare"}),))
    write(db, "thai", "visible-again")
    # The organisation owns the subscription: revoking the key that made it stops nothing.
    revoke_key(db, re.match(r"csdr_([0-9a-f]{8})_", keys["partner A"]).group(1), "t")
    write(db, "thai", "after-key-revoked")
    settled(db)
    # Each once; in no set order (deliveries due together are sent concurrently).
    assert sorted(received_items(inbox)) == ["after-key-revoked", "visible-again"]


def test_an_admin_organisation_without_a_valid_admin_key_no_longer_gets_private_items(
    app, keys, policies, receivers
):
    db = policies
    inbox = receivers["admin"]
    subscribe(app, keys["admin"], collections=["inhouse"], webhook=hook(inbox))
    write(db, "inhouse", "while-admin")
    settled(db)
    revoke_key(db, re.match(r"csdr_([0-9a-f]{8})_", keys["admin"]).group(1), "t")
    write(db, "inhouse", "after-admin-key-revoked")
    write(db, "open", "public-still")  # not named by the subscription: nothing
    settled(db)
    assert received_items(inbox) == ["while-admin"]
