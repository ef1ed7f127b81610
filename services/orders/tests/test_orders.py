"""Orders within quotas: acceptance all or nothing, 403 with the numbers at the limit, racing
orders that never overrun, Idempotency-Key replays, dry runs, cancel and the allowed transitions,
the year boundary on an injected clock, and free reads."""

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime

import psycopg
import pytest
from psycopg.types.json import Jsonb

from csdr_access.charging import Quota
from csdr_orders import lifecycle
from csdr_orders.errors import TransitionRefused
from services.orders.tests.samples import COLLECTION, auth, order_of, set_quota, stac_item


def counts(db: psycopg.Connection) -> tuple[int, int, int, int]:
    """Orders, order items, ledger rows, and reserved + committed scenes, node-wide."""
    row = db.execute(
        "SELECT (SELECT count(*) FROM csdr.orders), (SELECT count(*) FROM csdr.order_items),"
        " (SELECT count(*) FROM csdr.usage_ledger),"
        " (SELECT coalesce(sum(reserved + committed), 0) FROM csdr.quota_usage)"
    ).fetchone()
    assert row is not None
    return tuple(int(v) for v in row)  # type: ignore[return-value]


def test_quota_of_three_refuses_the_order_past_it_whole(client, db, scenes, keys):
    set_quota(db, "GISTDA", 3)
    th = auth(keys["thailand"])
    first = client.post("/orders", json=order_of("S00", "S01"), headers=th)
    assert first.status_code == 201, first.text
    order = first.json()
    assert order["status"] == "succeeded"
    assert [i["status"] for i in order["items"]] == ["succeeded", "succeeded"]
    [quota] = order["quota"]
    assert (quota["limit"], quota["used"], quota["reserved"], quota["remaining"]) == (3, 2, 0, 1)
    before = counts(db)

    refused = client.post("/orders", json=order_of("S02", "S03"), headers=th)
    assert refused.status_code == 403
    problem = refused.json()
    assert problem["code"] == "QuotaExceeded" and "nothing was ordered" in problem["description"]
    assert {k: problem[k] for k in ("limit", "used", "reserved", "remaining", "requested")} == {
        "limit": 3,
        "used": 2,
        "reserved": 0,
        "remaining": 1,
        "requested": 2,
    }
    assert problem["resets_at"] == "2027-01-01T00:00:00Z"
    assert counts(db) == before  # no order, no item, no ledger row, no reservation
    # The answer to an accepted order is the order as read back.
    assert client.get(f"/orders/{order['id']}", headers=th).json() == order

    # The other partner's quota is its own.
    other = client.post("/orders", json=order_of("S02", "S03"), headers=auth(keys["bangladesh"]))
    assert other.status_code == 201


def test_racing_orders_for_the_last_slot_one_wins(client, db, scenes, keys):
    set_quota(db, "GISTDA", 3)
    th = auth(keys["thailand"])
    assert client.post("/orders", json=order_of("S00", "S01"), headers=th).status_code == 201

    def order(scene: str) -> int:
        return client.post("/orders", json=order_of(scene), headers=th).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(order, scenes[2:10]))
    assert sorted(statuses) == [201] + [403] * 7
    used, reserved = db.execute(
        "SELECT committed, reserved FROM csdr.quota_usage u JOIN csdr.organisations o"
        " ON o.id = u.org_id WHERE o.name = 'GISTDA'"
    ).fetchone()
    assert used + reserved == 3
    charged = db.execute("SELECT count(*) FROM csdr.entitlements").fetchone()
    assert charged == (3,)


def test_an_order_waiting_on_the_counter_sees_what_its_holder_took(client, db, scenes, keys):
    """The holdings are read after the counter's lock: a scene the holder took while this
    order waited is free for it, never charged twice."""
    set_quota(db, "GISTDA", 1)
    th = auth(keys["thailand"])
    org_id = db.execute("SELECT id FROM csdr.organisations WHERE name = 'GISTDA'").fetchone()[0]
    with psycopg.connect() as holder, ThreadPoolExecutor(1) as pool:
        holder.execute(
            "SELECT csdr.lock_quota(%s, 'all', '2026-01-01', 1000)", (org_id,)
        )  # as an order or download of the organisation judging now
        waiting = pool.submit(client.post, "/orders", json=order_of("S00"), headers=th)
        deadline = time.monotonic() + 20
        while not db.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database())"
        ).fetchone()[0]:
            assert time.monotonic() < deadline and not waiting.done()
            time.sleep(0.02)
        holder.execute(
            "INSERT INTO csdr.orders (id, org_id, status, request, period_start, created_at,"
            " updated_at, links_expire_at) VALUES ('00000000-0000-4000-8000-000000000001', %s,"
            " 'pending', '{}', '2026-01-01', now(), now(), now())",
            (org_id,),
        )
        holder.execute(
            "INSERT INTO csdr.entitlements (org_id, period_start, collection, item_id, class,"
            " state, order_id) VALUES (%s, '2026-01-01', 'gf1', 'S00', 'all', 'reserved',"
            " '00000000-0000-4000-8000-000000000001')",
            (org_id,),
        )
        holder.execute(
            "UPDATE csdr.quota_usage SET reserved = 1 WHERE org_id = %s", (org_id,)
        )  # the quota is full now: only a free scene can still be ordered
        holder.commit()
        answer = waiting.result(timeout=20)
    assert answer.status_code == 201, answer.text
    assert answer.json()["items"][0]["charged"] is False
    assert answer.json()["quota"][0]["reserved"] == 1
    assert db.execute("SELECT count(*) FROM csdr.entitlements").fetchone() == (1,)


def test_an_order_over_two_classes_fits_both_or_is_refused_whole(client, db, scenes, keys, assets):
    """Each class's counter is judged on its own scenes; one class short refuses the whole
    order, and the class that had room is left as it was."""
    db.execute("SELECT pgstac.create_collection(%s)", (Jsonb({**COLLECTION, "id": "gf2"}),))
    for item_id in ("M00", "M01"):
        item = {**stac_item(item_id, assets / f"{item_id}.tif"), "collection": "gf2"}
        db.execute("SELECT pgstac.upsert_item(%s)", (Jsonb(item),))
    db.execute("INSERT INTO csdr.quota_classes (collection, class) VALUES ('gf2', 'metre')")
    set_quota(db, "GISTDA", 1, "metre")
    th = auth(keys["thailand"])
    wanted = [("gf1", "S00"), ("gf2", "M00"), ("gf2", "M01")]
    body = {"items": [{"collection": c, "id": i} for c, i in wanted]}

    refused = client.post("/orders", json=body, headers=th)
    assert refused.status_code == 403, refused.text
    problem = refused.json()
    assert (problem["class"], problem["requested"], problem["remaining"]) == ("metre", 2, 1)
    assert counts(db) == (0, 0, 0, 0)

    body["items"].pop()
    accepted = client.post("/orders", json=body, headers=th)
    assert accepted.status_code == 201, accepted.text
    quota = {q["class"]: (q["limit"], q["used"], q["remaining"]) for q in accepted.json()["quota"]}
    assert quota == {"all": (1000, 1, 999), "metre": (1, 1, 0)}
    assert {(i["collection"], i["class"]) for i in accepted.json()["items"]} == {
        ("gf1", "all"),
        ("gf2", "metre"),
    }


def test_the_database_and_the_library_judge_a_quota_alike(db):
    """csdr.quota_refuses (acceptance, in the database) and charging.Quota.refusal (the
    refusal's numbers, dry runs, downloads) are one rule: they agree on every case around the
    edges, a limit lowered below what was used included."""
    cases = [
        (used, reserved, limit, requested)
        for used in range(4)
        for reserved in range(3)
        for limit in range(5)
        for requested in range(4)
    ]
    refuses = db.execute(
        "SELECT csdr.quota_refuses(c.used, c.reserved, c.scenes, c.requested)"
        " FROM unnest(%s::int[], %s::int[], %s::int[], %s::int[]) WITH ORDINALITY"
        "  AS c (used, reserved, scenes, requested, n) ORDER BY c.n",
        [list(column) for column in zip(*cases, strict=True)],
    ).fetchall()
    library = [
        Quota(1, "GISTDA", "all", date(2026, 1, 1), limit, used, reserved).refusal(requested)
        is not None
        for used, reserved, limit, requested in cases
    ]
    assert [r for (r,) in refuses] == library
    assert any(library) and not all(library)


def test_same_idempotency_key_is_one_order_and_one_charge(client, db, scenes, keys):
    th = {**auth(keys["thailand"]), "Idempotency-Key": "order-2026-06-01-a"}
    first = client.post("/orders", json=order_of("S00", "S01"), headers=th)
    again = client.post("/orders", json=order_of("S00", "S01"), headers=th)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert first.json()["id"] == again.json()["id"]
    assert again.json()["quota"][0]["used"] == 2
    assert db.execute("SELECT count(*) FROM csdr.orders").fetchone() == (1,)

    # Racing replays of a new key: still one order.
    th2 = {**auth(keys["thailand"]), "Idempotency-Key": "order-2026-06-01-b"}
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(lambda _: client.post("/orders", json=order_of("S05"), headers=th2), range(4))
        )
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 201]
    assert len({a.json()["id"] for a in answers}) == 1
    assert db.execute("SELECT count(*) FROM csdr.orders").fetchone() == (2,)

    reused = client.post("/orders", json=order_of("S02"), headers=th)
    assert reused.status_code == 409 and reused.json()["code"] == "IdempotencyConflict"


def test_repeat_of_a_held_scene_is_free_and_dry_run_says_why(client, db, scenes, keys):
    set_quota(db, "GISTDA", 2)
    th = auth(keys["thailand"])
    assert client.post("/orders", json=order_of("S00"), headers=th).status_code == 201
    before = counts(db)
    dry = client.post("/orders?dry_run=true", json=order_of("S00", "S01"), headers=th)
    assert dry.status_code == 200
    report = dry.json()
    assert report["accepted"] is True and report["requested"] == 1
    charges = {i["id"]: (i["charge"], i["reason"]) for i in report["items"]}
    assert charges["S00"][0] == 0 and "holds this scene in 2026 already" in charges["S00"][1]
    assert charges["S01"][0] == 1
    assert counts(db) == before  # a dry run orders nothing

    too_many = client.post("/orders?dry_run=true", json=order_of("S01", "S02"), headers=th)
    assert too_many.json()["accepted"] is False
    assert too_many.json()["refused"]["remaining"] == 1

    repeat = client.post("/orders", json=order_of("S00", "S01"), headers=th)
    assert repeat.status_code == 201
    items = {i["id"]: i["charged"] for i in repeat.json()["items"]}
    assert items == {"S00": False, "S01": True}
    assert repeat.json()["quota"][0]["used"] == 2


def test_finished_order_cannot_be_canceled_and_history_is_append_only(client, db, scenes, keys):
    th = auth(keys["thailand"])
    order = client.post("/orders", json=order_of("S00"), headers=th).json()
    assert [h["status"] for h in order["history"] if "id" not in h] == [
        "ordered",
        "shipping",
        "succeeded",
    ]
    canceled = client.post(f"/orders/{order['id']}/cancel", headers=th)
    assert canceled.status_code == 409
    assert canceled.json()["code"] == "Conflict" and canceled.json()["status"] == "succeeded"
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        db.execute("UPDATE csdr.order_history SET status = 'canceled'")
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        db.execute("DELETE FROM csdr.usage_ledger")


def test_orders_are_private_to_their_organisation(client, scenes, keys):
    order = client.post("/orders", json=order_of("S00"), headers=auth(keys["thailand"])).json()
    other = client.get(f"/orders/{order['id']}", headers=auth(keys["bangladesh"]))
    assert other.status_code == 404 and other.json()["code"] == "NotFound"
    assert client.get("/orders", headers=auth(keys["bangladesh"])).json() == {"orders": []}
    admin = client.get("/orders", headers=auth(keys["admin"])).json()["orders"]
    assert [o["id"] for o in admin] == [order["id"]]
    assert client.get("/orders").status_code == 401


def test_bad_orders_are_clear_400s(client, scenes, keys):
    th = auth(keys["thailand"])
    cases = [
        ({}, "either items or search"),
        ({"items": []}, "no scene"),
        (order_of("NOPE"), "no item gf1/NOPE"),
        ({"search": {"sortby": "x"}}, "sortby"),
        ({"search": {"collections": ["secret"]}}, "no collection secret"),
        ({"items": [{"collection": "gf1"}]}, "items.0.id"),
    ]
    for body, words in cases:
        r = client.post("/orders", json=body, headers=th)
        assert r.status_code == 400, (body, r.text)
        assert set(r.json()) >= {"code", "description"} and words in r.json()["description"]


def test_order_by_search(client, scenes, keys):
    th = auth(keys["thailand"])
    body = {"search": {"collections": ["gf1"], "bbox": [100.0, 13.0, 100.25, 14.0]}}
    r = client.post("/orders", json=body, headers=th)
    assert r.status_code == 201, r.text
    assert sorted(i["id"] for i in r.json()["items"]) == ["S00", "S01", "S02"]
    big = client.post("/orders", json={"search": {}}, headers=th)
    assert big.status_code == 201 and len(big.json()["items"]) == 10


def test_year_boundary_on_the_injected_clock(client, clock, db, scenes, keys):
    set_quota(db, "GISTDA", 2)
    th = auth(keys["thailand"])
    clock.now = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    late = client.post("/orders", json=order_of("S00", "S01"), headers=th)
    assert late.status_code == 201 and late.json()["period"] == "2026"
    assert client.get("/quota", headers=th).json()["quotas"][0]["remaining"] == 0
    assert client.post("/orders", json=order_of("S02"), headers=th).status_code == 403

    clock.now = datetime(2027, 1, 1, 0, 0, 0, tzinfo=UTC)
    quota = client.get("/quota", headers=th).json()
    assert quota["period"] == "2027" and quota["resets_at"] == "2028-01-01T00:00:00Z"
    assert quota["quotas"][0]["remaining"] == 2
    # A scene held in 2026 is charged again in 2027: a new period, a new entitlement.
    new_year = client.post("/orders", json=order_of("S00"), headers=th)
    assert new_year.status_code == 201 and new_year.json()["items"][0]["charged"] is True


def test_polls_and_searches_are_free_and_429_is_never_403(make_client, db, scenes, keys):
    client = make_client(rate_limit_per_s=0.01, rate_limit_burst=105)
    set_quota(db, "GISTDA", 1)
    th = auth(keys["thailand"])
    order = client.post("/orders", json=order_of("S00"), headers=th).json()
    before = counts(db)
    for n in range(100):
        path = (f"/orders/{order['id']}", "/orders", "/quota", f"/orders/{order['id']}/items")[
            n % 4
        ]
        assert client.get(path, headers=th).status_code == 200
    assert counts(db) == before
    refused = client.post("/orders", json=order_of("S01"), headers=th)
    assert refused.status_code == 403 and "Retry-After" not in refused.headers
    statuses = [client.get("/quota", headers=th).status_code for _ in range(5)]
    assert 429 in statuses and 403 not in statuses
    limited = client.post("/orders", json=order_of("S01"), headers=th)
    assert limited.status_code == 429 and limited.headers["Retry-After"]
    assert counts(db) == before


def test_the_transition_table_allows_only_the_extension_order():
    assert lifecycle.steps("ordered", "succeeded") == ["shipping", "succeeded"]
    assert lifecycle.steps("pending", "shipping") == ["shipping"]
    for current, target in (
        ("pending", "ordered"),
        ("shipping", "pending"),
        ("succeeded", "canceled"),
    ):
        with pytest.raises(TransitionRefused):
            lifecycle.steps(current, target)
    assert lifecycle.order_status(["ordered", "ordered"]) == "ordered"
    assert lifecycle.order_status(["pending", "shipping"]) == "shipping"
    assert lifecycle.order_status(["succeeded", "canceled"]) == "partial"
