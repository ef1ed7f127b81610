"""Offline scenes produced on demand: a look-alike CRESDA package registered offline (metadata,
footprint, thumbnail, no COG; `order:status` orderable, found by a CQL2 search), ordered by two
organisations: one production job through ingest's queue and pipeline, the scene online for good
with a COG, each organisation charged once; a failed production refunds and the orders end
partial or failed with the reason; cancel refunds what is still waiting; a cancel racing the
watcher, or two orders queueing the same productions, end without a deadlock's 500."""

import asyncio
import json
import tarfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
import rasterio
from psycopg_pool import ConnectionPool

from csdr_ingest import jobs
from csdr_ingest.offline import register_offline
from csdr_ingest.settings import Settings as IngestSettings
from csdr_orders import watcher
from csdr_orders.settings import Settings
from csdr_service.pools import open_pool
from services.orders.tests.samples import add_offline, auth, order_of
from tests.fixtures import CRESDA_PMS, CRESDA_WFV
from tests.support.lookalike import write_lookalike

WFV_ID = "GF1_WFV3_20200523_L1A0004819525"


def wait_for(client, order_id: str, headers: dict, statuses: set[str], timeout_s: float = 30):
    deadline = time.monotonic() + timeout_s
    while (order := client.get(f"/orders/{order_id}", headers=headers).json())[
        "status"
    ] not in statuses:
        assert time.monotonic() < deadline, order
        time.sleep(0.1)
    return order


def run_production_jobs(ingest_settings: IngestSettings) -> list[dict]:
    """Run every queued ingest job the way the ingest workers do."""
    ran = []
    with ConnectionPool(min_size=1, max_size=2, open=True) as pool:
        while (job := jobs.claim(pool, "test:1")) is not None:
            jobs.run_job(pool, job, ingest_settings)
            ran.append(jobs.get(pool, job["id"]))
    return ran


def watcher_step(step: Callable[..., Awaitable[int]], clock, assets: Path) -> int:
    """One step of the production watcher (csdr_orders.watcher), as its loop runs it."""

    async def run() -> int:
        pool = await open_pool(2, "test-watcher", pgstac=True)
        try:
            return await step(pool, Settings(asset_roots=[str(assets)]), clock)
        finally:
            await pool.close()

    return asyncio.run(run())


def quota_used(client, key: str) -> tuple[int, int]:
    quota = client.get("/quota", headers=auth(key)).json()["quotas"][0]
    return quota["used"], quota["reserved"]


@pytest.fixture
def ingest_settings(assets: Path, tmp_path: Path) -> IngestSettings:
    return IngestSettings(assets_dir=assets, work_dir=tmp_path / "work", workers=1)


def test_offline_package_ordered_twice_is_produced_once(
    make_client, db, scenes, keys, ingest_settings, tmp_path, clock, assets
):
    package = write_lookalike(CRESDA_WFV, tmp_path / "archive", max_size=400)
    [offline] = register_offline(package, db, ingest_settings)
    assert offline["id"] == WFV_ID and offline["properties"]["order:status"] == "orderable"
    assert set(offline["assets"]) == {"thumbnail", "metadata"}
    assert Path(offline["assets"]["thumbnail"]["href"]).is_file()
    db.execute("SET search_path TO pgstac, public")
    found = db.execute(
        "SELECT pgstac.search(%s::jsonb)",
        (json.dumps({"filter": {"op": "=", "args": [{"property": "order:status"}, "orderable"]}}),),
    ).fetchone()[0]
    assert [f["id"] for f in found["features"]] == [WFV_ID]

    client = make_client()  # the watcher's steps are taken below, one at a time
    ref = {"items": [{"collection": "gf1-wfv", "id": WFV_ID}]}
    th, bd = auth(keys["thailand"]), auth(keys["bangladesh"])
    first = client.post("/orders", json=ref, headers=th).json()
    second = client.post("/orders", json=ref, headers=bd).json()
    assert first["status"] == second["status"] == "pending"
    assert quota_used(client, keys["thailand"]) == (0, 1)
    queued = db.execute(
        "SELECT count(*) FROM csdr.ingest_jobs WHERE options ? 'production'"
    ).fetchone()
    assert queued == (1,)

    [job] = run_production_jobs(ingest_settings)
    assert job["status"] == "succeeded", job
    # Produced: both orders are `shipping` until the watcher's next step delivers them.
    assert watcher_step(watcher.finish_productions, clock, assets) == 1
    for order, headers in ((first, th), (second, bd)):
        produced = client.get(f"/orders/{order['id']}", headers=headers).json()
        assert produced["status"] == "shipping"
        assert [i["status"] for i in produced["items"]] == ["shipping"]
        assert client.get(f"/orders/{order['id']}/items", headers=headers).json()["features"] == []
    assert quota_used(client, keys["thailand"]) == (0, 1)
    assert watcher_step(watcher.ship_all, clock, assets) == 2
    for order, headers in ((first, th), (second, bd)):
        done = client.get(f"/orders/{order['id']}", headers=headers).json()
        assert done["status"] == "succeeded"
        assert [h["status"] for h in done["history"] if "id" not in h] == [
            "ordered",
            "pending",
            "shipping",
            "succeeded",
        ]
        assert [h["status"] for h in done["history"] if "id" in h] == [
            "pending",
            "shipping",
            "succeeded",
        ]
    assert quota_used(client, keys["thailand"]) == quota_used(client, keys["bangladesh"]) == (1, 0)

    online = db.execute("SELECT pgstac.get_item(%s, 'gf1-wfv')", (WFV_ID,)).fetchone()[0]
    assert online["properties"]["order:status"] == "succeeded"
    with rasterio.open(online["assets"]["data"]["href"]) as cog:
        assert cog.crs is not None and cog.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    delivered = client.get(f"/orders/{first['id']}/items", headers=th).json()
    href = delivered["features"][0]["assets"]["data"]["href"]
    assert client.get(href.replace("http://127.0.0.1:8085", "")).status_code == 200
    # A third order of the scene is delivered at once: it is online for good.
    third = client.post("/orders", json=ref, headers=auth(keys["admin"]))
    assert third.json()["status"] == "succeeded"
    assert db.execute("SELECT count(*) FROM csdr.ingest_jobs").fetchone() == (1,)


def test_scenes_of_one_package_are_produced_by_its_one_job(
    make_client, db, scenes, keys, ingest_settings, tmp_path, clock, assets
):
    """A delivery bundling two products (a WFV and a PMS scene) is registered as two offline
    items in their two collections: ordering both in one order, and one of them again in
    another, queues the package's one production job, and both scenes come online with it, each
    in its own collection."""
    bundle = tmp_path / "delivery"
    for fixture in (CRESDA_WFV, CRESDA_PMS):
        write_lookalike(fixture, bundle, max_size=400, archive=None)
    package = tmp_path / "archive" / "delivery.tar.gz"
    package.parent.mkdir()
    with tarfile.open(package, "w:gz") as tar:
        tar.add(bundle, arcname="delivery")
    offline = register_offline(package, db, ingest_settings)
    refs = sorted(({"collection": i["collection"], "id": i["id"]} for i in offline), key=str)
    assert [r["collection"] for r in refs] == ["gf1-pms", "gf1-wfv"]
    client = make_client()
    th, bd = auth(keys["thailand"]), auth(keys["bangladesh"])
    both = client.post("/orders", json={"items": refs}, headers=th)
    assert both.status_code == 201, both.text
    one = client.post("/orders", json={"items": refs[1:]}, headers=bd)
    assert one.status_code == 201, one.text
    assert both.json()["status"] == one.json()["status"] == "pending"
    queued = db.execute(
        "SELECT p.item_id, j.source, j.collection FROM csdr.productions p"
        " JOIN csdr.ingest_jobs j ON j.id = p.job_id ORDER BY 1"
    ).fetchall()
    assert sorted(i for i, _, _ in queued) == sorted(r["id"] for r in refs)
    assert {(s, c) for _, s, c in queued} == {(str(package.resolve()), None)}

    [job] = run_production_jobs(ingest_settings)
    assert job["status"] == "succeeded", job
    assert watcher_step(watcher.finish_productions, clock, assets) == 2
    assert watcher_step(watcher.ship_all, clock, assets) == 2
    for order, headers in ((both, th), (one, bd)):
        done = client.get(f"/orders/{order.json()['id']}", headers=headers).json()
        assert done["status"] == "succeeded", done
    assert quota_used(client, keys["thailand"]) == (2, 0)
    assert quota_used(client, keys["bangladesh"]) == (1, 0)
    for ref in refs:
        item = db.execute(
            "SELECT pgstac.get_item(%s, %s)", (ref["id"], ref["collection"])
        ).fetchone()[0]
        assert item["properties"]["order:status"] == "succeeded"
        assert any("data" in a.get("roles", ()) for a in item["assets"].values()), item["assets"]
    assert db.execute("SELECT count(*) FROM pgstac.items").fetchone() == (len(refs) + 10,)


def test_a_production_whose_worker_died_runs_again_after_its_lease(
    make_client, db, scenes, keys, ingest_settings, tmp_path, clock, assets
):
    """A production is an ingest job: a worker that claimed it and died holds it only until its
    lease ends; it then runs once more on another worker, the dead one's outcome is refused, and
    the order is settled once."""
    package = write_lookalike(CRESDA_WFV, tmp_path / "archive", max_size=400)
    register_offline(package, db, ingest_settings)
    client = make_client()
    th = auth(keys["thailand"])
    ref = {"items": [{"collection": "gf1-wfv", "id": WFV_ID}]}
    order = client.post("/orders", json=ref, headers=th).json()
    assert order["status"] == "pending"
    with ConnectionPool(min_size=1, max_size=2, open=True) as pool:
        dead = jobs.claim(pool, "other-host:4242:deadbeef", lease_s=0.5)  # then it was killed
        assert dead is not None and dead["options"] == {"production": WFV_ID}
        assert jobs.claim(pool, "this-host:1:live") is None  # leased: nobody else runs it
        time.sleep(0.6)
        assert jobs.reap(pool, max_attempts=3) == []  # queued again, not failed
        job = jobs.claim(pool, "this-host:1:live")
        assert job is not None and (job["id"], job["attempt"]) == (dead["id"], 2)
        assert jobs.run_job(pool, job, ingest_settings) == "succeeded"
        assert not jobs.finish(pool, dead, [], {"code": "Late", "description": "came back"})
    attempts = db.execute(
        "SELECT attempt, worker, outcome FROM csdr.ingest_attempts WHERE job_id = %s"
        " ORDER BY attempt",
        (dead["id"],),
    ).fetchall()
    assert [(a, w.split(":")[0], o) for a, w, o in attempts] == [
        (1, "other-host", "lease-expired"),
        (2, "this-host", "succeeded"),
    ]
    assert watcher_step(watcher.finish_productions, clock, assets) == 1
    assert watcher_step(watcher.finish_productions, clock, assets) == 0  # settled once
    assert watcher_step(watcher.ship_all, clock, assets) == 1
    done = client.get(f"/orders/{order['id']}", headers=th).json()
    assert done["status"] == "succeeded" and quota_used(client, keys["thailand"]) == (1, 0)


def test_failed_production_refunds_and_orders_end_partial_or_failed(
    make_client, db, scenes, keys, ingest_settings, tmp_path
):
    folder = write_lookalike(CRESDA_WFV, tmp_path / "archive", max_size=400, archive=None)
    register_offline(folder, db, ingest_settings)
    next(folder.glob("*.rpb")).unlink()  # the archive lost its RPCs: production must fail
    client = make_client(worker=True)
    th, bd = auth(keys["thailand"]), auth(keys["bangladesh"])
    mixed = {"items": [{"collection": "gf1-wfv", "id": WFV_ID}, {"collection": "gf1", "id": "S00"}]}
    partial = client.post("/orders", json=mixed, headers=th).json()
    only = client.post("/orders", json={"items": mixed["items"][:1]}, headers=bd).json()
    assert partial["status"] == "shipping" and only["status"] == "pending"

    [job] = run_production_jobs(ingest_settings)
    assert job["status"] == "failed" and job["error"]["code"] == "RpcMissing"
    partial = wait_for(client, partial["id"], th, {"partial", "failed", "succeeded"})
    only = wait_for(client, only["id"], bd, {"partial", "failed", "succeeded"})
    assert (partial["status"], only["status"]) == ("partial", "failed")
    failed = next(i for i in partial["items"] if i["id"] == WFV_ID)
    assert failed["status"] == "failed" and "RPC" in failed["reason"]
    assert failed["reason"].startswith("production failed")
    assert quota_used(client, keys["thailand"]) == (1, 0)  # S00 only
    assert quota_used(client, keys["bangladesh"]) == (0, 0)

    # Ordered again: production is retried with a new job (still failing here).
    again = client.post("/orders", json={"items": mixed["items"][:1]}, headers=bd).json()
    assert again["status"] == "pending"
    assert db.execute("SELECT count(*) FROM csdr.ingest_jobs").fetchone() == (2,)


def test_cancel_refunds_what_waits_and_409_after(make_client, db, scenes, keys):
    add_offline(db, "OFF1", "/archive/OFF1.tar.gz")
    client = make_client()
    th = auth(keys["thailand"])
    order = client.post("/orders", json=order_of("OFF1", "S00"), headers=th).json()
    assert order["status"] == "shipping"
    assert client.get(f"/orders/{order['id']}", headers=th).json() == order
    assert quota_used(client, keys["thailand"]) == (1, 1)
    canceled = client.post(f"/orders/{order['id']}/cancel", headers=th)
    assert canceled.status_code == 200
    body = canceled.json()
    assert body["status"] == "partial"
    assert {i["id"]: i["status"] for i in body["items"]} == {"OFF1": "canceled", "S00": "succeeded"}
    assert quota_used(client, keys["thailand"]) == (1, 0)
    assert client.post(f"/orders/{order['id']}/cancel", headers=th).status_code == 409

    waiting = client.post("/orders", json=order_of("OFF1"), headers=th).json()
    gone = client.post(f"/orders/{waiting['id']}/cancel", headers=th).json()
    assert gone["status"] == "canceled" and gone["history"][-1]["status"] == "canceled"
    assert quota_used(client, keys["thailand"]) == (1, 0)


def test_a_canceled_charge_passes_to_the_next_order_waiting(make_client, db, scenes, keys):
    add_offline(db, "OFF1", "/archive/OFF1.tar.gz")
    client = make_client()
    th = auth(keys["thailand"])
    first = client.post("/orders", json=order_of("OFF1"), headers=th).json()
    second = client.post("/orders", json=order_of("OFF1"), headers=th).json()
    assert (first["items"][0]["charged"], second["items"][0]["charged"]) == (True, False)
    client.post(f"/orders/{first['id']}/cancel", headers=th)
    second = client.get(f"/orders/{second['id']}", headers=th).json()
    assert second["items"][0]["charged"] is True  # the scene is still charged once, to it
    assert quota_used(client, keys["thailand"]) == (0, 1)
    client.post(f"/orders/{second['id']}/cancel", headers=th)
    assert quota_used(client, keys["thailand"]) == (0, 0)


def test_offline_scene_without_a_package_is_refused(client, db, scenes, keys):
    add_offline(db, "OFF2", "/archive/OFF2.tar.gz")
    db.execute("DELETE FROM csdr.offline_packages")
    r = client.post("/orders", json=order_of("OFF2"), headers=auth(keys["thailand"]))
    assert r.status_code == 400 and "no package" in r.json()["description"]


def waiting_for(db: psycopg.Connection, pid: int) -> int | None:
    """The backend waiting for a lock `pid` holds, if any."""
    rows = db.execute(
        "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", (pid,)
    ).fetchall()
    return rows[0][0] if rows else None


def until(check, what: str):
    """Poll `check` until it returns something (at most 30 s)."""
    deadline = time.monotonic() + 30
    while (value := check()) is None:
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return value


def assert_both_pending_and_queued(db: psycopg.Connection, answers: list) -> None:
    """Both orders accepted, pending, and OFF1 and OFF2 queued for production."""
    assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]
    assert [a.json()["status"] for a in answers] == ["pending", "pending"]
    queued = db.execute(
        "SELECT p.item_id, j.status FROM csdr.productions p JOIN csdr.ingest_jobs j"
        " ON j.id = p.job_id ORDER BY 1"
    ).fetchall()
    assert queued == [("OFF1", "queued"), ("OFF2", "queued")]


def test_a_cancel_losing_a_deadlock_to_the_watcher_runs_again(
    make_client, db, keys, ingest_settings, tmp_path, clock, assets
):
    # The watcher settles the orders waiting for a produced scene in id order, locking each; a
    # cancel locks its order, then the item of the order its charge passes to. A cancel of the
    # later order whose heir the watcher has just moved deadlocks with it.
    package = write_lookalike(CRESDA_WFV, tmp_path / "archive", max_size=200)
    register_offline(package, db, ingest_settings)
    client = make_client()
    th = auth(keys["thailand"])
    ref = {"items": [{"collection": "gf1-wfv", "id": WFV_ID}]}
    for _ in range(30):  # an heir (free) that the watcher reaches first: a smaller (random) id
        charged = client.post("/orders", json=ref, headers=th).json()
        heir = client.post("/orders", json=ref, headers=th).json()
        if heir["id"] < charged["id"]:
            break
        for order in (heir, charged):  # the heir first: the charge is refunded, not passed on
            assert client.post(f"/orders/{order['id']}/cancel", headers=th).status_code == 200
    assert heir["id"] < charged["id"] and not heir["items"][0]["charged"]
    assert charged["items"][0]["charged"]
    [job] = run_production_jobs(ingest_settings)
    assert job["status"] == "succeeded", job

    answers = {}
    with ThreadPoolExecutor(2) as pool, psycopg.connect() as hold:
        # The cancel holds its order and waits at its item, locked here...
        hold.execute(
            "SELECT 1 FROM csdr.order_items WHERE order_id = %s FOR UPDATE", (charged["id"],)
        )
        canceled = pool.submit(client.post, f"/orders/{charged['id']}/cancel", headers=th)
        canceling = until(lambda: waiting_for(db, hold.info.backend_pid), "the cancel to wait")
        # ...the watcher moves the heir's item, then waits for the cancel's order...
        settled = pool.submit(watcher_step, watcher.finish_productions, clock, assets)
        until(lambda: waiting_for(db, canceling), "the watcher to wait")
        time.sleep(1.5)  # past deadlock_timeout: the watcher's check found no cycle
        # ...and once let go, the cancel waits for the heir's item: PostgreSQL aborts it.
        hold.rollback()
        answers = {"cancel": canceled.result(), "settled": settled.result()}

    assert answers["settled"] == 1
    assert answers["cancel"].status_code == 200, answers["cancel"].text
    assert answers["cancel"].json()["status"] == "canceled"
    assert watcher_step(watcher.ship_all, clock, assets) == 1
    heir = client.get(f"/orders/{heir['id']}", headers=th).json()
    assert heir["status"] == "succeeded" and heir["items"][0]["charged"]
    assert quota_used(client, keys["thailand"]) == (1, 0)


def test_orders_naming_offline_scenes_in_opposite_orders_queue_them_without_a_deadlock(
    make_client, db, scenes, keys
):
    # Queueing a production locks the scene's production row until the order commits: two
    # orders taking two scenes in opposite orders would each wait for the other.
    add_offline(db, "OFF1", "/archive/OFF1.tar.gz")
    add_offline(db, "OFF2", "/archive/OFF2.tar.gz")
    client = make_client()
    th, bd = auth(keys["thailand"]), auth(keys["bangladesh"])

    with ThreadPoolExecutor(2) as pool, psycopg.connect() as hold:
        # A production job of OFF1's package, not committed: the first order waits at OFF1's...
        hold.execute(
            "INSERT INTO csdr.ingest_jobs (id, source, options)"
            " VALUES (gen_random_uuid(), '/archive/OFF1.tar.gz', '{\"production\": \"OFF1\"}')"
        )
        first = pool.submit(client.post, "/orders", json=order_of("OFF1", "OFF2"), headers=th)
        placing = until(lambda: waiting_for(db, hold.info.backend_pid), "the first order to wait")
        # ...the second waits for the first's, past deadlock_timeout; then the first goes on.
        second = pool.submit(client.post, "/orders", json=order_of("OFF2", "OFF1"), headers=bd)
        until(lambda: waiting_for(db, placing), "the second order to wait")
        time.sleep(1.5)
        hold.rollback()
        answers = [first.result(), second.result()]

    assert_both_pending_and_queued(db, answers)


def test_orders_naming_scenes_of_one_package_queue_its_one_job_without_a_deadlock(
    make_client, db, scenes, keys
):
    # Two scenes of one package: the first order names both, the second one of them. Each
    # holds a scene's production row; without one decision at a time per package, each would
    # wait for the other's job of the package.
    for item_id in ("OFF1", "OFF2"):
        add_offline(db, item_id, "/archive/BUNDLE.tar.gz")
    client = make_client()
    th, bd = auth(keys["thailand"]), auth(keys["bangladesh"])

    def blocked() -> int | None:
        n = db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE cardinality(pg_blocking_pids(pid)) > 0"
        ).fetchone()[0]
        return n if n >= 2 else None

    with ThreadPoolExecutor(2) as pool, psycopg.connect() as hold:
        # A production job of the package, not committed: the first order waits for it...
        hold.execute(
            "INSERT INTO csdr.ingest_jobs (id, source, options)"
            " VALUES (gen_random_uuid(), '/archive/BUNDLE.tar.gz', '{\"production\": \"X\"}')"
        )
        first = pool.submit(client.post, "/orders", json=order_of("OFF1", "OFF2"), headers=th)
        until(lambda: waiting_for(db, hold.info.backend_pid), "the first order to wait")
        # ...the second order comes while it waits; then the held job goes away.
        second = pool.submit(client.post, "/orders", json=order_of("OFF2"), headers=bd)
        until(blocked, "both orders to wait")
        time.sleep(1.5)  # past deadlock_timeout
        hold.rollback()
        answers = [first.result(), second.result()]

    assert_both_pending_and_queued(db, answers)
    assert db.execute("SELECT count(*) FROM csdr.ingest_jobs").fetchone() == (1,)
