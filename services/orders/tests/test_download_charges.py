"""A scene reaches an organisation once per period, by an order or by its first full-resolution
download from the catalog: the download takes one scene of the quota (the same counter orders
lock), repeats and downloads of ordered scenes are free, browse assets and public collections
stay free, and at the limit the download answers 403 with the numbers orders give."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from csdr_access.admin import issue_key, set_policy
from services.orders.tests.samples import auth, order_of, set_quota


def asset_url(item_id: str, asset: str = "data") -> str:
    return f"/collections/gf1/items/{item_id}/assets/{asset}"


def quota_of(client, key: str) -> dict:
    [quota] = client.get("/quota", headers=auth(key)).json()["quotas"]
    return quota


def ledger(db: psycopg.Connection, kind: str) -> list[tuple[str, bool]]:
    """GISTDA's ledger rows of `kind`: (item, whether an order is named)."""
    rows = db.execute(
        "SELECT item_id, order_id IS NOT NULL FROM csdr.usage_ledger l"
        " JOIN csdr.organisations o ON o.id = l.org_id WHERE o.name = 'GISTDA' AND l.kind = %s"
        " ORDER BY l.id",
        (kind,),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


@pytest.fixture
def governed(db, keys) -> None:
    """`gf1` is for registered keys only: a quota-governed collection."""
    set_policy(db, "gf1", "registered", [], "test")


def test_first_download_charges_once_and_the_limit_answers_403(
    client, catalog, db, scenes, keys, assets: Path, governed
):
    set_quota(db, "GISTDA", 2)
    th, key = auth(keys["thailand"]), keys["thailand"]
    (assets / "S00.png").write_bytes(b"png")

    first = catalog.get(asset_url("S00"), headers=th)
    assert first.status_code == 200 and first.content == b"cog bytes of S00"
    assert quota_of(client, key)["used"] == 1
    # Repeats, byte ranges, HEAD and the thumbnail are free.
    assert catalog.get(asset_url("S00"), headers=th).status_code == 200
    ranged = catalog.get(asset_url("S00"), headers={**th, "Range": "bytes=0-2"})
    assert ranged.status_code == 206 and ranged.content == b"cog"
    assert catalog.head(asset_url("S01"), headers=th).status_code == 200
    assert catalog.get(asset_url("S00", "thumbnail"), headers=th).status_code == 200
    assert quota_of(client, key)["used"] == 1

    # Ordering the downloaded scene is free; a new one takes the last slot; downloading the
    # ordered scene then is free too, and its first download is counted.
    held = client.post("/orders", json=order_of("S00", "S01"), headers=th)
    assert held.status_code == 201, held.text
    assert {i["id"]: i["charged"] for i in held.json()["items"]} == {"S00": False, "S01": True}
    assert catalog.get(asset_url("S01"), headers=th).status_code == 200
    quota = quota_of(client, key)
    assert (quota["used"], quota["remaining"]) == (2, 0)

    refused = catalog.get(asset_url("S02"), headers=th)
    assert refused.status_code == 403
    problem = refused.json()
    assert problem["code"] == "QuotaExceeded" and "S02" in problem["description"]
    assert {k: problem[k] for k in ("limit", "used", "reserved", "remaining", "requested")} == {
        "limit": 2,
        "used": 2,
        "reserved": 0,
        "remaining": 0,
        "requested": 1,
    }
    assert problem["resets_at"] == "2027-01-01T00:00:00Z"  # the injected clock's year
    # The order refused for the same reason gives the same numbers.
    by_order = client.post("/orders", json=order_of("S02"), headers=th).json()
    assert {k: by_order[k] for k in problem if k not in ("description",)} == {
        k: v for k, v in problem.items() if k != "description"
    }

    # The ledger: one charged download (no order), one first download of an ordered scene.
    assert ledger(db, "downloaded") == [("S00", False), ("S01", True)]
    usage = client.get("/stats/usage", params={"group_by": "organisation"}, headers=th).json()
    # `source` counts the scenes over GISTDA's area in collections it may see: all ten.
    assert usage["totals"] == {"source": len(scenes), "ordered": 1, "released": 1, "downloaded": 2}

    # Another organisation, the administrator and a public collection are not charged by it.
    assert catalog.get(asset_url("S02"), headers=auth(keys["bangladesh"])).status_code == 200
    assert quota_of(client, keys["bangladesh"])["used"] == 1
    assert catalog.get(asset_url("S03"), headers=auth(keys["admin"])).status_code == 200
    assert db.execute("SELECT count(*) FROM csdr.entitlements").fetchone() == (3,)


def test_public_collections_and_mirror_keys_are_not_charged(client, catalog, db, scenes, keys):
    set_quota(db, "GISTDA", 0)
    th = auth(keys["thailand"])
    assert catalog.get(asset_url("S00")).status_code == 200  # anonymous, public
    assert catalog.get(asset_url("S00"), headers=th).status_code == 200  # public: free
    set_policy(db, "gf1", "partners", ["GISTDA"], "test")
    assert catalog.get(asset_url("S00"), headers=th).status_code == 403
    # A partner node's key (scope mirror) copies and tiles through this node uncharged.
    mirror = issue_key(db, "GISTDA", ["read", "mirror"], "test")[0]
    assert catalog.get(asset_url("S00"), headers=auth(mirror)).status_code == 200
    assert db.execute("SELECT count(*) FROM csdr.usage_ledger").fetchone() == (0,)


def test_orders_and_downloads_racing_for_the_last_slots_never_overrun(
    client, catalog, db, scenes, keys, governed
):
    set_quota(db, "GISTDA", 3)
    th = auth(keys["thailand"])

    def order(scene: str) -> int:
        return client.post("/orders", json=order_of(scene), headers=th).status_code

    def download(scene: str) -> int:
        return catalog.get(asset_url(scene), headers=th).status_code

    with ThreadPoolExecutor(8) as pool:
        ordered = [pool.submit(order, s) for s in scenes[0:4]]
        downloaded = [pool.submit(download, s) for s in scenes[4:8]]
        # The same scene by both ways at once: one charge, both answered.
        both = [pool.submit(order, "S08"), pool.submit(download, "S08")]
        statuses = [f.result() for f in ordered + downloaded]
        pair = [f.result() for f in both]
    granted = statuses.count(201) + statuses.count(200) + (1 if 200 in pair or 201 in pair else 0)
    assert set(statuses) <= {200, 201, 403} and set(pair) <= {200, 201, 403}
    assert granted == 3, (statuses, pair)
    used, reserved = db.execute(
        "SELECT committed, reserved FROM csdr.quota_usage u JOIN csdr.organisations o"
        " ON o.id = u.org_id WHERE o.name = 'GISTDA'"
    ).fetchone()
    assert (used, reserved) == (3, 0)
    assert db.execute("SELECT count(*) FROM csdr.entitlements").fetchone() == (3,)
    # S08 either got the slot for both requests or for neither.
    assert pair in ([201, 200], [403, 403]), pair
