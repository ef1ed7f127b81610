"""A node whose assets live in object storage (moto's S3 server on 127.0.0.1): a GeoTIFF goes in
through POST /jobs and its COG and thumbnail land in the bucket, the catalog finds it, the tiler
draws it through `/vsis3/`, GDAL reads the COG through the catalog's download route (a presigned
redirect), a re-ingest and deletes (of an item, of a collection) leave exactly the catalogue's
objects, and a failed ingest leaves none."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from urllib.parse import quote

import httpx
import morecantile
import numpy as np
import psycopg
import pytest
import rasterio
from rasterio.io import MemoryFile
from shapely.geometry import shape

from csdr_ingest.synthetic import DEMO_SCENES, write_scene
from tests.e2e.conftest import ASSETS_BUCKET
from tests.e2e.load import wait_for
from tests.support.pixels import mercator_pixels

COLLECTION = "s3-scenes"
SCENE = dataclasses.replace(DEMO_SCENES[0], name="CSDR_S3_E118.9_N37.8_20240512", size=768)
REFUSED = dataclasses.replace(DEMO_SCENES[1], name="CSDR_S3_REFUSED_20240607", size=256)
DELETED = dataclasses.replace(DEMO_SCENES[2], name="CSDR_S3_DELETED_20240918", size=256)
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
PREFIX = "node/"


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return write_scene(SCENE, tmp_path_factory.mktemp("inbox"))


@pytest.fixture(scope="module")
def item(s3_node, source) -> dict:
    job = s3_node.run_job(source, COLLECTION)
    assert job["status"] == "succeeded", job
    return httpx.get(f"{s3_node.catalog}/collections/{COLLECTION}/items/{SCENE.name}").json()


def item_objects(s3, name: str = SCENE.name) -> list[str]:
    return s3.keys(ASSETS_BUCKET, f"{PREFIX}{COLLECTION}/{name}/")


def test_ingest_writes_the_cog_and_thumbnail_to_the_bucket(s3_node, s3, item, pg_cluster):
    objects = item_objects(s3)
    assert [o.rsplit(".", 1)[1] for o in objects] == ["png", "tif"]
    assert s3.keys(ASSETS_BUCKET, f"{PREFIX}.pending/") == []  # the job's marker is gone
    assert not (s3_node.assets_dir / COLLECTION).exists()  # nothing on the local disk
    with psycopg.connect(pg_cluster.conninfo(s3_node.env["PGDATABASE"])) as conn:
        stored = conn.execute(
            "SELECT pgstac.get_item(%s, %s)->'assets'->'data'->>'href'", (SCENE.name, COLLECTION)
        ).fetchone()
    assert stored is not None
    assert stored[0] == f"s3://{ASSETS_BUCKET}/{next(o for o in objects if o.endswith('.tif'))}"


def test_search_finds_the_item_with_download_links(s3_node, item):
    found = httpx.get(f"{s3_node.catalog}/search", params={"collections": COLLECTION}).json()
    assert [f["id"] for f in found["features"]] == [SCENE.name]
    href = found["features"][0]["assets"]["data"]["href"]
    assert href == f"{s3_node.catalog}/collections/{COLLECTION}/items/{SCENE.name}/assets/data"


def test_tile_is_drawn_from_the_bucket(s3_node, item, source):
    lon, lat = shape(item["geometry"]).representative_point().coords[0]
    tile = WEB_MERCATOR.tile(lon, lat, 14)
    url = (
        f"{s3_node.tiler}/collections/{COLLECTION}/items/{SCENE.name}/tiles/WebMercatorQuad/"
        f"{tile.z}/{tile.x}/{tile.y}.png?assets={quote('data|bidx=4', safe='')}"
    )
    r = httpx.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
    with MemoryFile(r.content) as mem, mem.open() as png:
        served, alpha = png.read(1), png.read(png.count)
    expected = mercator_pixels(source, WEB_MERCATOR.xy_bounds(tile), [4], 256)[0]
    valid = (alpha > 0) & (expected > 0)
    assert valid.mean() > 0.3, "the tile should cover a good part of the scene"
    diff = np.abs(served.astype("float64") - expected)[valid]
    assert np.median(diff) == 0
    assert np.mean(diff <= 50) > 0.9


def test_download_redirects_to_a_presigned_url_gdal_reads(s3_node, s3, item, source):
    url = item["assets"]["data"]["href"]
    r = httpx.get(url)
    assert r.status_code == 307 and r.headers["cache-control"] == "no-store"
    location = r.headers["location"]
    assert location.startswith(f"{s3.endpoint}/{ASSETS_BUCKET}/{PREFIX}") and "X-Amz-" in location
    ranged = httpx.get(location, headers={"Range": "bytes=0-3"})
    assert ranged.status_code == 206 and ranged.content in (b"II*\x00", b"II+\x00")
    # GDAL follows the redirect and reads the COG with byte ranges: the source's pixels.
    with rasterio.open(url) as cog, rasterio.open(source) as src:
        assert cog.driver == "GTiff" and cog.overviews(1)
        assert np.array_equal(cog.read(4), src.read(4))
    # The access rule applies before any redirect: an unknown collection is a 404.
    gone = httpx.get(url.replace(f"/collections/{COLLECTION}/", "/collections/nope/"))
    assert gone.status_code == 404


def test_reingest_and_delete_keep_the_bucket_in_step(s3_node, s3, tmp_path):
    source = write_scene(DELETED, tmp_path)
    assert s3_node.run_job(source, COLLECTION)["status"] == "succeeded"
    before = item_objects(s3, DELETED.name)
    assert len(before) == 2
    assert s3_node.run_job(source, COLLECTION)["status"] == "succeeded"
    # The old version's objects stay for the grace period (5 s here), then the ingest
    # service's sweep deletes them.
    after = [k for k in item_objects(s3, DELETED.name) if k not in before]
    assert len(after) == 2 and set(before) <= set(item_objects(s3, DELETED.name))
    wait_for(lambda: item_objects(s3, DELETED.name) == after, 30, "the old objects deleted")

    item_url = f"{s3_node.catalog}/collections/{COLLECTION}/items/{DELETED.name}"
    # A PUT without the thumbnail: its object goes, the COG stays.
    item = httpx.get(item_url).json()
    del item["assets"]["thumbnail"]
    item["assets"]["data"]["href"] = (
        f"s3://{ASSETS_BUCKET}/{next(k for k in after if k.endswith('.tif'))}"
    )
    put = httpx.put(item_url, json=item, headers=s3_node.ingest_headers)
    assert put.status_code == 204, put.text
    assert [k.rsplit(".", 1)[1] for k in item_objects(s3, DELETED.name)] == ["tif"]
    tiles = f"{s3_node.tiler}/collections/{COLLECTION}/items/{DELETED.name}/info?assets=data"
    assert httpx.get(tiles).status_code == 200
    assert httpx.delete(item_url).status_code in (401, 403)  # deletes need a key
    assert httpx.delete(item_url, headers=s3_node.ingest_headers).status_code == 204
    assert item_objects(s3, DELETED.name) == []
    assert httpx.get(item_url).status_code == 404
    assert httpx.get(tiles).status_code == 404


def test_a_failed_ingest_leaves_no_object(s3_node, s3, pg_cluster, tmp_path):
    # The database refuses the item after its files were uploaded: the publish step fails last.
    database = pg_cluster.conninfo(s3_node.env["PGDATABASE"])
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(
            """
            CREATE FUNCTION public.refuse_item() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
            CREATE TRIGGER refuse_item BEFORE INSERT ON pgstac.items FOR EACH ROW
            WHEN (NEW.id = 'CSDR_S3_REFUSED_20240607') EXECUTE FUNCTION public.refuse_item();
            """
        )
    job = s3_node.run_job(write_scene(REFUSED, tmp_path), COLLECTION)
    assert job["status"] == "failed", job
    assert s3.keys(ASSETS_BUCKET, f"{PREFIX}{COLLECTION}/{REFUSED.name}/") == []
    assert s3.keys(ASSETS_BUCKET, f"{PREFIX}.pending/") == []


def test_deleting_a_collection_empties_its_folder(s3_node, s3, tmp_path):
    doomed = dataclasses.replace(DEMO_SCENES[2], name="CSDR_S3_DOOMED_20240918", size=256)
    assert s3_node.run_job(write_scene(doomed, tmp_path), "s3-doomed")["status"] == "succeeded"
    assert len(s3.keys(ASSETS_BUCKET, f"{PREFIX}s3-doomed/")) == 2
    url = f"{s3_node.catalog}/collections/s3-doomed"
    assert httpx.delete(url, headers=s3_node.ingest_headers).status_code == 200
    assert s3.keys(ASSETS_BUCKET, f"{PREFIX}s3-doomed/") == []
    assert httpx.get(url).status_code == 404
