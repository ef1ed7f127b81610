"""One rule for which scenes are online (csdr_storage.availability; csdr.scene_online, migration
0046), the same answer everywhere it is read. For a scene of each `order:status` the queryable
allows, and of none, newer than an online scene of its collection: the database function and
Python's `is_online`; a STAC search with the online and offline filters; the tiler's latest
scene of the collection, the scenes of its collection mosaic and of a registered search's mosaic;
the orders service's dry run and an administrator's approval (delivered at once, or queued for
production). The portal's badge and filters are held to the same rule in
tests/e2e/test_portal.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from geojson_pydantic import Polygon
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from csdr_access.admin import add_org, issue_key
from csdr_access.quotas import set_approval
from csdr_orders.app import create_app as create_orders
from csdr_orders.settings import Settings as OrdersSettings
from csdr_storage.availability import OFFLINE_FILTER, ONLINE_FILTER, ORDER_STATUS, is_online
from csdr_tiler.items import Catalogue
from csdr_tiler.mosaics import latest_search_id, online_search, search_scenes

RING = [[100.0, 13.0], [100.1, 13.0], [100.1, 13.1], [100.0, 13.1], [100.0, 13.0]]
AREA = Polygon(type="Polygon", coordinates=[RING])  # type: ignore[arg-type]
PGSTAC_PATH = "-c search_path=pgstac,public"  # as the services connect: pgSTAC's functions need it


def statuses() -> list[str | None]:
    """Every `order:status` the catalog's queryable allows (migration 0020), and none."""
    with psycopg.connect() as conn:
        row = conn.execute(
            "SELECT definition -> 'enum' FROM pgstac.queryables WHERE name = %s", (ORDER_STATUS,)
        ).fetchone()
    assert row is not None and "succeeded" in row[0] and "orderable" in row[0]
    return [None, *row[0]]


def collection_of(status: str | None) -> str:
    return f"scenes-{status or 'no-status'}"


def item(collection: str, item_id: str, when: str, data: Path, status: str | None) -> dict:
    properties: dict[str, Any] = {"datetime": when, "platform": "gf-1", "instruments": ["wfv"]}
    if status is not None:
        properties[ORDER_STATUS] = status
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": item_id,
        "collection": collection,
        "geometry": {"type": "Polygon", "coordinates": [RING]},
        "bbox": [100.0, 13.0, 100.1, 13.1],
        "properties": properties,
        "links": [],
        "assets": {"data": {"href": str(data), "type": "image/tiff", "roles": ["data"]}},
    }


@pytest.fixture
def scenes(pg_env: dict[str, str], tmp_path: Path) -> dict[str | None, str]:
    """Per status, a collection holding an online scene OLD and a newer scene NEW of that
    status (its package registered, so an order may produce it); status -> collection."""
    data = tmp_path / "data.tif"
    data.write_bytes(b"cog bytes")
    found = {}
    with psycopg.connect(autocommit=True) as conn:
        for status in statuses():
            cid = collection_of(status)
            collection = {
                "type": "Collection",
                "stac_version": "1.1.0",
                "id": cid,
                "description": f"scenes of status {status}",
                "license": "other",
                "links": [],
                "extent": {
                    "spatial": {"bbox": [[-180, -90, 180, 90]]},
                    "temporal": {"interval": [[None, None]]},
                },
            }
            conn.execute("SELECT pgstac.create_collection(%s)", (Jsonb(collection),))
            old = item(cid, "OLD", "2020-01-01T00:00:00Z", data, "succeeded")
            new = item(cid, "NEW", "2024-01-01T00:00:00Z", data, status)
            for one in (old, new):
                conn.execute("SELECT pgstac.create_item(%s)", (Jsonb(one),))
            conn.execute(
                "INSERT INTO csdr.offline_packages (collection, item_id, source)"
                " VALUES (%s, 'NEW', %s)",
                (cid, f"/archive/{cid}.tar.gz"),
            )
            found[status] = cid
    return found


@pytest.fixture
def pool(pg_env: dict[str, str]) -> Iterator[ConnectionPool]:
    options = {"options": PGSTAC_PATH}
    with ConnectionPool("", kwargs=options, min_size=1, max_size=2, open=True) as opened:
        yield opened


def expected(status: str | None) -> bool:
    """The rule as the docs state it: no status or `succeeded` is online, any other offline."""
    return status in (None, "succeeded")


def test_the_database_python_and_search_filters_agree(scenes):
    with psycopg.connect(options=PGSTAC_PATH) as conn:
        for status, cid in scenes.items():
            stored, hydrated, properties = conn.execute(
                "SELECT csdr.scene_online(i.content), csdr.scene_online(pgstac.get_item(i.id,"
                " i.collection)), pgstac.get_item(i.id, i.collection) -> 'properties'"
                " FROM pgstac.items i WHERE i.collection = %s AND i.id = 'NEW'",
                (cid,),
            ).fetchone()
            assert stored is hydrated is is_online(properties) is expected(status), status
            for cql2, matches in ((ONLINE_FILTER, expected(status)), (OFFLINE_FILTER, None)):
                body = {"collections": [cid], "filter": cql2, "filter-lang": "cql2-json"}
                page = conn.execute("SELECT pgstac.search(%s)", (Jsonb(body),)).fetchone()[0]
                ids = {f["id"] for f in page["features"]}
                if matches is None:  # the offline filter: NEW when offline, never OLD
                    assert ids == (set() if expected(status) else {"NEW"}), status
                else:
                    assert ids == ({"OLD", "NEW"} if matches else {"OLD"}), status
        assert conn.execute("SELECT csdr.scene_online(NULL)").fetchone() == (None,)


def test_the_tiler_draws_online_scenes_only(scenes, pool):
    catalogue = Catalogue(pool, items_max=16, collections_ttl_s=0)
    for status, cid in scenes.items():
        online = {"OLD", "NEW"} if expected(status) else {"OLD"}
        assert catalogue.latest_item(cid).id == ("NEW" if expected(status) else "OLD"), status
        mosaic = latest_search_id(pool, cid)
        drawn = search_scenes(pool, mosaic, AREA, skipcovered=False, exitwhenfull=False)
        assert {s["id"] for s in drawn} == online, status
        with pool.connection() as conn:
            registered = conn.execute(
                "SELECT hash FROM pgstac.search_query(%s)", (Jsonb({"collections": [cid]}),)
            ).fetchone()[0]
        reads = online_search(pool, registered)
        drawn = search_scenes(pool, reads, AREA, skipcovered=False, exitwhenfull=False)
        assert {s["id"] for s in drawn} == online, status


def test_orders_deliver_online_scenes_and_produce_offline_ones(scenes, pg_env, tmp_path):
    with psycopg.connect(autocommit=True) as conn:
        add_org(conn, "GISTDA", "TH", "partner", "test")
        add_org(conn, "CRESDA", "CN", "main", "test")
        set_approval(conn, "GISTDA", "manual", "test")
        partner = {"X-API-Key": issue_key(conn, "GISTDA", ["read"], "test")[0]}
        admin = {"X-API-Key": issue_key(conn, "CRESDA", ["admin"], "test")[0]}
    settings = OrdersSettings(worker=False, asset_roots=[str(tmp_path)])
    wanted = {"items": [{"collection": cid, "id": "NEW"} for cid in scenes.values()]}
    with TestClient(create_orders(settings)) as client:
        dry = client.post("/orders?dry_run=true", json=wanted, headers=partner)
        assert dry.status_code == 200, dry.text
        online = {i["collection"]: i["online"] for i in dry.json()["items"]}
        assert online == {cid: expected(status) for status, cid in scenes.items()}

        held = client.post("/orders", json=wanted, headers=partner)
        assert held.status_code == 201, held.text
        approved = client.post(f"/orders/{held.json()['id']}/approve", headers=admin)
        assert approved.status_code == 200, approved.text
        got = {i["collection"]: i["status"] for i in approved.json()["items"]}
        assert got == {
            cid: "succeeded" if expected(status) else "pending" for status, cid in scenes.items()
        }
