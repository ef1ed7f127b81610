"""Delivery: the order's scenes as a STAC ItemCollection pystac reads, download links signed for
the organisation that work until they expire and answer 410 JSON after, renewal at no charge,
and a scene's first download written once to the ledger."""

from datetime import timedelta
from urllib.parse import urlsplit

import pystac

from services.orders.tests.samples import auth, order_of


def path_of(href: str) -> str:
    parts = urlsplit(href)
    return f"{parts.path}?{parts.query}"


def ledger(db, kind: str) -> int:
    row = db.execute("SELECT count(*) FROM csdr.usage_ledger WHERE kind = %s", (kind,)).fetchone()
    return int(row[0])


def test_links_work_until_they_expire_and_renew_is_free(client, clock, db, scenes, keys, assets):
    th = auth(keys["thailand"])
    order = client.post("/orders", json=order_of("S00", "S01"), headers=th).json()
    r = client.get(f"/orders/{order['id']}/items", headers=th)
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    collection = pystac.ItemCollection.from_dict(r.json())
    assert sorted(i.id for i in collection) == ["S00", "S01"]
    item = next(i for i in collection if i.id == "S00")
    data = item.assets["data"]
    assert data.href.startswith(f"http://127.0.0.1:8085/orders/{order['id']}/download/")
    assert data.extra_fields["expires"] == order["expires"]
    assert item.assets["thumbnail"].href.startswith("http://127.0.0.1:8081/collections/gf1/")

    got = client.get(path_of(data.href))
    assert got.status_code == 200 and got.content == (assets / "S00.tif").read_bytes()
    assert client.get(path_of(data.href), headers=th).status_code == 200
    assert ledger(db, "downloaded") == 1  # the first download only

    other = client.get(path_of(data.href), headers=auth(keys["bangladesh"]))
    assert other.status_code == 403 and "another organisation" in other.json()["description"]
    forged = path_of(data.href).replace("signature=", "signature=0")
    assert client.get(forged).status_code == 403
    moved = path_of(data.href).replace("/S00/", "/S01/")
    assert client.get(moved).status_code == 403

    clock.now += timedelta(days=14, seconds=1)
    expired = client.get(path_of(data.href))
    assert expired.status_code == 410
    assert expired.headers["content-type"] == "application/json"
    assert expired.json()["code"] == "LinkExpired" and expired.json()["expired_at"]

    charged = ledger(db, "reserved"), client.get("/quota", headers=th).json()["quotas"][0]
    renewed = client.post(f"/orders/{order['id']}/renew", headers=th)
    assert renewed.status_code == 200
    assert renewed.json()["history"][-1]["reason_code"] == "renewed"
    fresh = client.get(f"/orders/{order['id']}/items", headers=th).json()
    href = next(f for f in fresh["features"] if f["id"] == "S00")["assets"]["data"]["href"]
    assert client.get(path_of(href)).status_code == 200
    assert (ledger(db, "reserved"), client.get("/quota", headers=th).json()["quotas"][0]) == charged


def test_without_a_configured_key_every_process_signs_alike(make_client, db, scenes, keys):
    """No CSDR_ORDERS_LINK_SECRET: the key is made once in the database, so a link from one
    process (or before a restart) works on another."""
    first, second = make_client(), make_client()
    th = auth(keys["thailand"])
    order = first.post("/orders", json=order_of("S00"), headers=th).json()
    items = first.get(f"/orders/{order['id']}/items", headers=th).json()
    href = items["features"][0]["assets"]["data"]["href"]
    assert second.get(path_of(href)).status_code == 200
    stored = db.execute("SELECT count(*) FROM csdr.node_secrets").fetchone()[0]
    assert stored == 1
    configured = make_client(link_secret="an operator's own secret")
    assert configured.get(path_of(href)).status_code == 403  # another key: another signature
