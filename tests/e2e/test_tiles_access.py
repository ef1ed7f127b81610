"""A restricted scene's tiles over real sockets, as QGIS gets them: an XYZ template and a WMTS
layer carrying `?api_key=` (QGIS sends no headers for them) read by GDAL; without the key, 404;
a revoked key stops working within seconds."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import httpx
import morecantile
import numpy as np
import psycopg
import pytest
import rasterio
import rasterio.windows

from csdr_access.admin import add_org, issue_key, revoke_key, set_policy
from csdr_ingest.synthetic import DEMO_SCENES, write_scene
from tests.e2e.qgis import centre_tile, xyz_layer

COLLECTION = "e2e-restricted"
SCENE = replace(DEMO_SCENES[1], size=512, gsd=24.0, name="E2E_RESTRICTED_SCENE")
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")


@dataclass
class Restricted:
    base: str  # the item's tiler URL
    key: str  # a partner key that may see it
    item: dict


@pytest.fixture(scope="module")
def restricted(node, pg_cluster, tmp_path_factory) -> Restricted:
    source = write_scene(SCENE, tmp_path_factory.mktemp("inbox"))
    job = node.run_job(source, COLLECTION)
    assert job["status"] == "succeeded", job
    with psycopg.connect(pg_cluster.conninfo(node.env["PGDATABASE"]), autocommit=True) as conn:
        add_org(conn, "E2E partner", "TH", "partner", "test")
        set_policy(conn, COLLECTION, "partners", ["E2E partner"], "test")
        key = issue_key(conn, "E2E partner", ["read"], "test")[0]
    item = httpx.get(
        f"{node.catalog}/collections/{COLLECTION}/items/{SCENE.name}", headers={"X-API-Key": key}
    ).json()
    base = f"{node.tiler}/collections/{COLLECTION}/items/{SCENE.name}"
    # The tiler reuses an anonymous visibility list for up to its access TTL (2 s).
    deadline = time.monotonic() + 10
    while httpx.get(f"{base}/presets/WMTSCapabilities.xml").status_code != 404:
        assert time.monotonic() < deadline, "the new policy was not applied"
        time.sleep(0.2)
    return Restricted(base, key, item)


def test_a_qgis_xyz_template_with_the_key_serves_the_restricted_scene(restricted, tmp_path):
    tilejson = httpx.get(
        f"{restricted.base}/presets/false-color/WebMercatorQuad/tilejson.json",
        params={"api_key": restricted.key},
    )
    assert tilejson.status_code == 200, tilejson.text
    (listed,) = tilejson.json()["tiles"]
    assert f"api_key={restricted.key}" in listed
    z = tilejson.json()["maxzoom"]
    tile = centre_tile(restricted.item, z)
    tiles = f"{restricted.base}/presets/false-color/tiles/WebMercatorQuad"
    plain = f"{tiles}/{tile.z}/{tile.x}/{tile.y}.png"
    assert httpx.get(plain).status_code == 404
    assert httpx.get(plain, params={"api_key": restricted.key}).status_code == 200
    # GDAL's WMS driver with a TMS service: what a QGIS XYZ layer is built on.
    template = f"{tiles}/${{z}}/${{x}}/${{y}}.png?api_key={restricted.key}"
    description = xyz_layer(tmp_path / "xyz.xml", template, z)
    with rasterio.open(description) as ds:
        got = ds.read(window=rasterio.windows.Window(tile.x * 256, tile.y * 256, 256, 256))
    direct = httpx.get(plain, params={"api_key": restricted.key})
    with rasterio.MemoryFile(direct.content) as mem, mem.open() as img:
        assert np.array_equal(got, img.read())
    assert (got[3] == 255).mean() > 0.5 and got[:3].std() > 5


def test_gdal_reads_the_keyed_preset_wmts(restricted):
    url = f"{restricted.base}/presets/WMTSCapabilities.xml?api_key={restricted.key}"
    assert httpx.get(url.split("?")[0]).status_code == 404
    with rasterio.open(f"WMTS:{url},layer=false-color,tilematrixset=WebMercatorQuad") as ds:
        overview = ds.read(out_shape=(ds.count, 256, 256))
    assert (overview[3] > 0).mean() > 0.3 and overview[:3].std() > 5


def test_a_revoked_key_stops_working_within_5_seconds(node, pg_cluster, restricted):
    conninfo = pg_cluster.conninfo(node.env["PGDATABASE"])
    with psycopg.connect(conninfo, autocommit=True) as conn:
        key, prefix = issue_key(conn, "E2E partner", ["read"], "test")
    url = f"{restricted.base}/presets/WMTSCapabilities.xml"
    assert httpx.get(url, params={"api_key": key}).status_code == 200
    with psycopg.connect(conninfo, autocommit=True) as conn:
        revoke_key(conn, prefix, "test")
    start = time.monotonic()
    while (r := httpx.get(url, params={"api_key": key})).status_code == 200:
        assert time.monotonic() - start < 5, "the tiler still serves a key revoked 5 s ago"
        time.sleep(0.1)
    assert r.status_code == 401 and "revoked" in r.json()["description"]
    assert r.headers["www-authenticate"] == "Bearer"
