"""Orders end to end over real sockets: a look-alike CRESDA package registered offline through
ingest's POST /jobs, found by a CQL2 `order:status` search on the catalog, ordered by two
organisations through the orders service; ingest's workers produce it once, the scene is online
with a COG the tiler renders, each organisation is charged once, the first organisation's webhook
receives accepted -> item.succeeded -> completed signed through the push worker, and the delivery
is an ItemCollection pystac-client reads, whose signed link downloads the COG; a catalog download
by a third organisation takes a scene of its quota, and its order of the scene is then free."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import psycopg
import pystac
import pytest
from rasterio.io import MemoryFile

from conftest import free_port
from csdr_access.admin import add_org, issue_key, set_policy
from services.push.tests.receiver import Receiver
from services.push.tests.samples import SECRET
from tests.e2e.processes import service
from tests.e2e.qgis import centre_tile
from tests.fixtures import CRESDA_WFV
from tests.support.lookalike import write_lookalike

WFV_ID = "GF1_WFV3_20200523_L1A0004819525"
COLLECTION = "gf1-wfv"


@pytest.fixture(scope="module")
def orders(node, tmp_path_factory) -> Iterator[tuple[str, str]]:
    """The orders service (with its production watcher) and push (with its worker)."""
    port = free_port()
    env = {
        **node.env,
        "CSDR_ORDERS_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "CSDR_ORDERS_CATALOG_URL": node.catalog,
        "CSDR_ORDERS_ASSET_ROOTS": str(node.assets_dir),
        "CSDR_ORDERS_POLL_INTERVAL_S": "0.2",
        "CSDR_PUSH_ALLOW_PRIVATE_TARGETS": "true",
        "CSDR_PUSH_POLL_INTERVAL_S": "0.2",
    }
    logs = tmp_path_factory.mktemp("orders")
    with (
        service("csdr_push.app:create_app", free_port(), env, logs) as push,
        service("csdr_orders.app:create_app", port, env, logs) as url,
    ):
        yield url, push


def wait(fetch, done, timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while not done(value := fetch()):
        assert time.monotonic() < deadline, value
        time.sleep(0.2)
    return value


def test_offline_scene_ordered_by_two_organisations(node, orders, pg_cluster, tmp_path):
    conninfo = pg_cluster.conninfo(node.env["PGDATABASE"])
    orders_url, push_url = orders
    with psycopg.connect(conninfo, autocommit=True) as conn:
        add_org(conn, "GISTDA", "TH", "partner", "test")
        add_org(conn, "SPARRSO", "BD", "partner", "test")
        th = {"X-API-Key": issue_key(conn, "GISTDA", ["read"], "test")[0]}
        bd = {"X-API-Key": issue_key(conn, "SPARRSO", ["read"], "test")[0]}

    package = write_lookalike(CRESDA_WFV, tmp_path / "archive", max_size=400)
    queued = httpx.post(
        f"{node.ingest}/jobs",
        json={"source": str(package), "offline": True},
        headers=node.ingest_headers,
    )
    assert queued.status_code == 202, queued.text
    job = wait(
        lambda: httpx.get(
            f"{node.ingest}/jobs/{queued.json()['id']}", headers=node.ingest_headers
        ).json(),
        lambda j: j["status"] in ("succeeded", "failed"),
    )
    assert job["status"] == "succeeded", job
    offline = {"op": "=", "args": [{"property": "order:status"}, "orderable"]}
    found = httpx.post(
        f"{node.catalog}/search", json={"filter": offline, "filter-lang": "cql2-json"}
    )
    assert [f["id"] for f in found.json()["features"]] == [WFV_ID]
    assert "data" not in found.json()["features"][0]["assets"]

    receiver = Receiver(free_port()).start()
    try:
        subscription = {"bbox": [0, 0, 1, 1], "webhook": {"url": receiver.url, "secret": SECRET}}
        assert (
            httpx.post(f"{push_url}/subscriptions", json=subscription, headers=th).status_code
            == 201
        )
        ref = {"items": [{"collection": COLLECTION, "id": WFV_ID}]}
        mine = httpx.post(f"{orders_url}/orders", json=ref, headers=th)
        theirs = httpx.post(f"{orders_url}/orders", json=ref, headers=bd)
        assert (mine.status_code, theirs.status_code) == (201, 201), mine.text
        assert mine.json()["status"] == "pending"

        def status_of(order, headers):
            return httpx.get(f"{orders_url}/orders/{order.json()['id']}", headers=headers).json()

        for order, headers in ((mine, th), (theirs, bd)):
            done = wait(
                lambda order=order, headers=headers: status_of(order, headers),
                lambda o: o["status"] not in ("pending", "shipping"),
            )
            assert done["status"] == "succeeded", done
            assert done["quota"][0]["used"] == 1 and done["quota"][0]["reserved"] == 0
        events = wait(lambda: receiver.events(SECRET), lambda e: len(e) >= 3, 60)
    finally:
        receiver.stop()
    events.sort(key=lambda e: e["data"]["sequence"])
    assert [e["type"] for e in events] == [
        "org.csdr.order.accepted",
        "org.csdr.order.item.succeeded",
        "org.csdr.order.completed",
    ]

    with psycopg.connect(conninfo) as conn:
        productions = conn.execute(
            "SELECT count(*) FROM csdr.ingest_jobs WHERE options ? 'production'"
        ).fetchone()
    assert productions == (1,)
    item = httpx.get(f"{node.catalog}/collections/{COLLECTION}/items/{WFV_ID}").json()
    assert item["properties"]["order:status"] == "succeeded" and "data" in item["assets"]
    tile = centre_tile(item, 8)
    png = httpx.get(
        f"{node.tiler}/collections/{COLLECTION}/items/{WFV_ID}/presets/true-color/tiles/"
        f"WebMercatorQuad/8/{tile.x}/{tile.y}.png"
    )
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    with MemoryFile(png.content) as memory, memory.open() as image:
        assert image.read(image.count).max() > 0  # pixels drawn, not an empty tile

    delivered = httpx.get(f"{orders_url}/orders/{mine.json()['id']}/items", headers=th)
    collection = pystac.ItemCollection.from_dict(delivered.json())
    [produced] = list(collection)
    cog = httpx.get(produced.assets["data"].href)
    assert cog.status_code == 200 and cog.content[:4] in (b"II*\x00", b"II+\x00")
    assert httpx.get(produced.assets["data"].href, headers=bd).status_code == 403

    # Downloading from the catalog charges the same quota, once: a third organisation's first
    # full-resolution download takes a scene, and its order of that scene is then free.
    with psycopg.connect(conninfo, autocommit=True) as conn:
        set_policy(conn, COLLECTION, "registered", [], "test")
        add_org(conn, "LASAC", "LA", "partner", "test")
        la = {"X-API-Key": issue_key(conn, "LASAC", ["read"], "test")[0]}
    asset = f"{node.catalog}/collections/{COLLECTION}/items/{WFV_ID}/assets/data"
    assert httpx.get(asset, headers={**la, "Range": "bytes=0-3"}).status_code == 206
    assert httpx.get(asset, headers={**la, "Range": "bytes=4-7"}).status_code == 206
    quota = httpx.get(f"{orders_url}/quota", headers=la).json()["quotas"][0]
    assert (quota["used"], quota["reserved"]) == (1, 0)
    theirs = httpx.post(f"{orders_url}/orders", json=ref, headers=la).json()
    assert theirs["status"] == "succeeded" and theirs["items"][0]["charged"] is False
    usage = httpx.get(f"{orders_url}/stats/usage", headers=la).json()
    measures = {m: usage["totals"][m] for m in ("ordered", "released", "downloaded")}
    assert measures == {"ordered": 0, "released": 0, "downloaded": 1}
