"""Manual approval per organisation: its orders wait `ordered` (charges reserved, nothing
delivered, no production queued); an administrator approves (online scenes delivered, offline
ones queued) or rejects (canceled, `reason_code: rejected`, refunded); others get 403, and an
order not waiting for approval answers 409."""

from csdr_access.cli import main
from services.orders.tests.samples import add_offline, auth, order_of


def quota(client, key: str) -> tuple[int, int]:
    q = client.get("/quota", headers=auth(key)).json()["quotas"][0]
    return q["used"], q["reserved"]


def test_held_orders_wait_for_an_administrator(client, db, scenes, keys):
    assert main(["quota", "approval", "GISTDA", "manual"]) == 0
    add_offline(db, "OFF1", "/archive/OFF1.tar.gz")
    th, admin = auth(keys["thailand"]), auth(keys["admin"])
    held = client.post("/orders", json=order_of("S00", "OFF1"), headers=th).json()
    assert client.get(f"/orders/{held['id']}", headers=th).json() == held
    assert held["status"] == "ordered" and held["awaiting_approval"] is True
    assert {i["status"] for i in held["items"]} == {"ordered"}
    assert held["history"][-1]["reason_code"] == "awaiting_approval"
    assert quota(client, keys["thailand"]) == (0, 2)
    assert db.execute("SELECT count(*) FROM csdr.ingest_jobs").fetchone() == (0,)
    assert client.get(f"/orders/{held['id']}/items", headers=th).json()["features"] == []

    refused = client.post(f"/orders/{held['id']}/approve", headers=th)
    assert refused.status_code == 403 and refused.json()["code"] == "Forbidden"
    approved = client.post(f"/orders/{held['id']}/approve", json={"reason": "MOU"}, headers=admin)
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert body["status"] == "shipping" and body["awaiting_approval"] is False
    assert {i["id"]: i["status"] for i in body["items"]} == {"S00": "succeeded", "OFF1": "pending"}
    assert quota(client, keys["thailand"]) == (1, 1)
    assert db.execute("SELECT count(*) FROM csdr.ingest_jobs").fetchone() == (1,)
    again = client.post(f"/orders/{held['id']}/approve", headers=admin)
    assert again.status_code == 409

    rejected = client.post("/orders", json=order_of("S01", "S02"), headers=th).json()
    assert quota(client, keys["thailand"]) == (1, 3)
    answer = client.post(
        f"/orders/{rejected['id']}/reject", json={"reason": "outside the MOU"}, headers=admin
    ).json()
    assert answer["status"] == "canceled"
    assert answer["history"][-1]["reason_code"] == "rejected"
    assert "outside the MOU" in answer["history"][-1]["reason_text"]
    assert quota(client, keys["thailand"]) == (1, 1)  # refunded

    assert main(["quota", "approval", "GISTDA", "auto"]) == 0
    direct = client.post("/orders", json=order_of("S03"), headers=th).json()
    assert direct["status"] == "succeeded"
    assert client.post(f"/orders/{direct['id']}/reject", headers=admin).status_code == 409


def test_the_orders_waiting_for_approval_are_listed_and_only_administrators_decide(
    client, db, scenes, keys
):
    assert main(["quota", "approval", "GISTDA", "manual"]) == 0
    th, bd, admin = auth(keys["thailand"]), auth(keys["bangladesh"]), auth(keys["admin"])
    held = client.post("/orders", json=order_of("S00"), headers=th).json()
    direct = client.post("/orders", json=order_of("S01"), headers=bd).json()
    assert direct["status"] == "succeeded"

    def waiting(headers) -> list[tuple[str, bool]]:
        r = client.get("/orders", params={"awaiting_approval": "true"}, headers=headers)
        assert r.status_code == 200, r.text
        return [(o["id"], o["awaiting_approval"]) for o in r.json()["orders"]]

    assert waiting(admin) == [(held["id"], True)]
    assert waiting(bd) == []  # another organisation's held order is not listed
    listed = client.get("/orders", params={"awaiting_approval": "false"}, headers=admin).json()
    assert [(o["id"], o["awaiting_approval"]) for o in listed["orders"]] == [(direct["id"], False)]

    # Neither the organisation that placed it nor another decides; the order still waits.
    for headers in (th, bd):
        for action in ("approve", "reject"):
            r = client.post(f"/orders/{held['id']}/{action}", headers=headers)
            assert r.status_code == 403 and r.json()["code"] == "Forbidden", r.text
    assert waiting(admin) == [(held["id"], True)]
    rejected = client.post(f"/orders/{held['id']}/reject", json={"reason": "no"}, headers=admin)
    assert rejected.json()["status"] == "canceled"
    assert waiting(admin) == []
