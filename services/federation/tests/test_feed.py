"""GET /federation/changes: coalesced pages of the current items and collections after a cursor,
only what the key may see, a cursor that never skips a transaction committing late, and 410 for a
cursor older than the retention."""

from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from csdr_access.admin import set_policy
from csdr_federation.app import create_app
from csdr_federation.settings import Settings
from services.federation.tests.conftest import stac_collection, stac_item

pytestmark = pytest.mark.slow  # seconds per test (scenes, apps): make test, not test-fast


@pytest.fixture
def client(pg_env, keys):
    settings = Settings(worker=False, node_name="main", catalog_url="http://main.example")
    with TestClient(create_app(settings), headers={"X-API-Key": keys["partner"]}) as c:
        yield c


def read_all(client: TestClient, after: str | None = None, **params: Any) -> dict[str, Any]:
    """Read pages until the head; return every change, the last cursor and the page count."""
    changes, pages = [], 0
    while True:
        query = {**params, **({"after": after} if after else {})}
        r = client.get("/federation/changes", params=query)
        assert r.status_code == 200, r.text
        page = r.json()
        changes += page["changes"]
        after, pages = page["next"], pages + 1
        if page["at_head"]:
            return {"changes": changes, "next": after, "pages": pages}


def ops(changes: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    return [
        (c["op"], c["collection"], c["id"]) if "id" in c else (c["op"], c["collection"])
        for c in changes
    ]


def test_a_page_holds_each_changed_item_once_as_it_is_now(client, db, upsert):
    start = read_all(client)["next"]
    upsert(stac_item("a", **{"eo:cloud_cover": 5}), stac_item("b"), stac_item("c"))
    upsert(stac_item("a", **{"eo:cloud_cover": 7}))
    db.execute("SELECT pgstac.delete_item('b', 'gf1')")
    got = read_all(client, after=start)
    # b was created and deleted within the reader's gap: never seen, nothing to delete.
    assert ops(got["changes"]) == [
        ("collection", "gf1"),
        ("upsert", "gf1", "c"),
        ("upsert", "gf1", "a"),
    ]
    a = got["changes"][2]
    assert a["item"]["properties"]["eo:cloud_cover"] == 7
    assert a["href"] == "http://main.example/collections/gf1/items/a"
    assert len(a["hash"]) == 64
    # At the head: reading on from `next` gives nothing.
    again = client.get("/federation/changes", params={"after": got["next"]}).json()
    assert again["changes"] == [] and again["at_head"] and again["next"] == got["next"]

    db.execute("SELECT pgstac.delete_item('c', 'gf1')")
    later = read_all(client, after=got["next"])
    assert ops(later["changes"]) == [("delete", "gf1", "c")]


def test_small_pages_lose_nothing_and_say_when_the_head_is_reached(client, upsert):
    start = read_all(client)["next"]
    upsert(*[stac_item(f"i{n:02d}") for n in range(7)])
    first = client.get("/federation/changes", params={"after": start, "limit": 3}).json()
    assert not first["at_head"] and len(first["changes"]) >= 3
    assert first["behind"] == 4  # the reader's lag, in events
    last = client.get("/federation/changes", params={"after": first["next"], "limit": 9}).json()
    assert last["at_head"] and last["behind"] == 0
    got = read_all(client, after=start, limit=3)
    assert got["pages"] == 3
    assert sorted(c["id"] for c in got["changes"] if c["op"] == "upsert") == [
        f"i{n:02d}" for n in range(7)
    ]


def test_a_transaction_committing_after_a_later_one_is_not_skipped(client, pg_env, db, upsert):
    # Partitions first: pgSTAC's check of a partition made by a concurrent, uncommitted
    # transaction fails ("relation _items_2_2024 does not exist").
    upsert(stac_item("warm1"), stac_item("warm2", collection="gf2"))
    start = read_all(client)["next"]
    with psycopg.connect() as t1, psycopg.connect() as t2:
        # T1 writes A first (lower event id, lower transaction id) and stays open...
        t1.execute("SELECT pgstac.upsert_item(%s)", (Jsonb(stac_item("A")),))
        # ...while T2 writes B and commits (in another collection: pgSTAC's partition check
        # locks the collection's partition until commit).
        t2.execute("SET lock_timeout = '20s'")
        t2.execute("SELECT pgstac.upsert_item(%s)", (Jsonb(stac_item("B", collection="gf2")),))
        t2.commit()
        ids = db.execute(
            "SELECT item_id FROM csdr.item_events WHERE item_id IN ('A', 'B') ORDER BY id"
        ).fetchall()
        assert ids == [("B",)]  # only B is committed so far
        while_open = client.get("/federation/changes", params={"after": start}).json()
        # B is committed but an older transaction is still running: B waits behind it, so the
        # cursor cannot move past A's position.
        assert while_open["changes"] == [] and while_open["next"] == start
        t1.commit()
    after_commit = read_all(client, after=start)
    assert {c["id"] for c in after_commit["changes"] if c["op"] == "upsert"} == {"A", "B"}
    a_id, b_id = (
        r[0]
        for r in db.execute(
            "SELECT id FROM csdr.item_events WHERE item_id IN ('A', 'B') ORDER BY item_id"
        ).fetchall()
    )
    assert a_id < b_id  # a reader keeping "the highest id seen" would have skipped A


def test_only_what_the_key_may_see_and_a_policy_change_deletes(client, db, upsert, keys):
    db.execute("SELECT pgstac.create_collection(%s)", (Jsonb(stac_collection("secret")),))
    set_policy(db, "secret", "private", [], "test")
    start = read_all(client)["next"]
    upsert(stac_item("s1", collection="secret"), stac_item("p1"))
    got = read_all(client, after=start)
    assert ops(got["changes"]) == [("collection", "gf1"), ("upsert", "gf1", "p1")]
    admin = client.get(
        "/federation/changes", params={"after": start}, headers={"X-API-Key": keys["admin"]}
    ).json()
    assert ("upsert", "secret", "s1") in ops(admin["changes"])

    set_policy(db, "gf1", "partners", ["CRESDA"], "test")  # hidden from LASAC now
    hidden = read_all(client, after=got["next"])
    assert ops(hidden["changes"]) == [("collection_delete", "gf1")]
    set_policy(db, "gf1", "partners", ["LASAC"], "test")
    shown = read_all(client, after=hidden["next"])
    assert ops(shown["changes"]) == [("collection", "gf1")]


def test_a_selection_serves_matching_items_and_deletes_those_that_leave_it(client, upsert):
    start = read_all(client)["next"]
    near, far = {"lon": 102.6, "lat": 17.9}, {"lon": 118.9, "lat": 37.8}
    upsert(
        stac_item("clear", **near, **{"eo:cloud_cover": 5}),
        stac_item("cloudy", **near, **{"eo:cloud_cover": 60}),
        stac_item("far", **far, **{"eo:cloud_cover": 5}),
        stac_item("other", collection="gf2", **near, **{"eo:cloud_cover": 5}),
    )
    selection = {"collections": "gf1", "bbox": "100,10,110,25", "max_cloud": 20}
    got = read_all(client, after=start, **selection)
    assert ops(got["changes"]) == [("collection", "gf1"), ("upsert", "gf1", "clear")]
    upsert(stac_item("clear", **near, **{"eo:cloud_cover": 70}))
    left = read_all(client, after=got["next"], **selection)
    assert ops(left["changes"]) == [("delete", "gf1", "clear")]


def test_mirrored_collections_are_never_fed_back(client, db, upsert):
    start = read_all(client)["next"]
    mirrored = stac_collection("la-dom", **{"csdr:origin": "la"})
    db.execute("SELECT pgstac.create_collection(%s)", (Jsonb(mirrored),))
    upsert(stac_item("dom1", collection="la-dom", **{"csdr:origin": "la"}), stac_item("own"))
    got = read_all(client, after=start)
    assert ops(got["changes"]) == [("collection", "gf1"), ("upsert", "gf1", "own")]


def test_a_cursor_older_than_the_retention_answers_410(client, db, upsert):
    start = read_all(client)["next"]
    upsert(stac_item("old1"), stac_item("old2"))
    middle = read_all(client, after=start)["next"]
    db.execute("UPDATE csdr.item_events SET created_at = now() - interval '61 days'")
    db.execute("UPDATE csdr.collection_events SET created_at = now() - interval '61 days'")
    upsert(stac_item("new"))
    assert db.execute("SELECT csdr.prune_feed_events('60 days')").fetchone()[0] >= 2
    for cursor in (None, start):
        r = client.get("/federation/changes", params={"after": cursor} if cursor else {})
        assert r.status_code == 410, r.text
        assert r.json()["code"] == "CursorExpired" and r.json()["reconcile"] is True
    # A reader that had read the pruned events reads on.
    assert ops(read_all(client, after=middle)["changes"]) == [
        ("collection", "gf1"),
        ("upsert", "gf1", "new"),
    ]


@pytest.mark.parametrize(
    ("params", "status", "names"),
    [
        ({"after": "banana"}, 400, "after"),
        ({"after": "99999999999999999999999.1"}, 400, "after"),
        ({"after": "1.99999999999999999999"}, 400, "after"),
        ({"limit": 5001}, 400, "limit"),
        ({"limit": 0}, 400, "limit"),
        ({"bbox": "1,2,3"}, 400, "bbox"),
        ({"bbox": "0,50,10,40"}, 400, "bbox"),
        ({"intersects": "{not json"}, 400, "intersects"),
        ({"intersects": '{"type": "Polygon", "coordinates": [[1]]}'}, 400, "intersects"),
        ({"max_cloud": 120}, 400, "max_cloud"),
        ({"since": "2024-01-01T00:00:00"}, 400, "since"),
    ],
)
def test_bad_input_is_a_400_naming_the_parameter(client, params, status, names):
    r = client.get("/federation/changes", params=params)
    assert r.status_code == status, r.text
    assert names in r.json()["description"]


def test_the_feed_needs_a_valid_key(client):
    assert client.get("/federation/changes", headers={"X-API-Key": ""}).status_code == 401
    r = client.get("/federation/changes", headers={"X-API-Key": "csdr_bad_key"})
    assert r.status_code == 401 and r.json()["code"] == "Unauthorized"


def test_the_digest_counts_each_month_and_changes_with_any_item(client, upsert):
    june, clear = {"datetime": "2024-06-30T23:59:59Z"}, {"eo:cloud_cover": 5}
    upsert(stac_item("m1", **clear), stac_item("m2", **clear), stac_item("j1", **june, **clear))
    upsert(stac_item("g2", collection="gf2", **{"eo:cloud_cover": 50}))
    first = client.get("/federation/digest", params={"max_cloud": 20}).json()
    months = {(m["collection"], m["month"]): m for m in first["months"]}
    assert set(months) == {("gf1", "2024-05"), ("gf1", "2024-06")}  # g2 is too cloudy
    assert months[("gf1", "2024-05")]["count"] == 2 and months[("gf1", "2024-06")]["count"] == 1
    # The cursor is the feed's head: nothing to read after it.
    head = client.get("/federation/changes", params={"after": first["cursor"]}).json()
    assert head["changes"] == [] and head["at_head"]

    upsert(stac_item("m2", platform="GF-1B", **clear))
    second = client.get("/federation/digest", params={"max_cloud": 20}).json()
    changed = {(m["collection"], m["month"]) for m in second["months"]} - {
        (m["collection"], m["month"]) for m in second["months"] if m in first["months"]
    }
    assert changed == {("gf1", "2024-05")}

    listing = client.get(
        "/federation/items", params={"collection": "gf1", "month": "2024-05", "max_cloud": 20}
    ).json()
    assert ops(listing["changes"])[0] == ("collection", "gf1")
    assert sorted(ops(listing["changes"])[1:]) == [("upsert", "gf1", "m1"), ("upsert", "gf1", "m2")]
    m2 = next(c for c in listing["changes"] if c.get("id") == "m2")
    assert m2["item"]["properties"]["platform"] == "GF-1B"


def test_a_month_is_yyyy_mm(client):
    r = client.get("/federation/items", params={"collection": "gf1", "month": "2024-13"})
    assert r.status_code == 400 and "month" in r.json()["description"]
