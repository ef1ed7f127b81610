"""The walking skeleton end to end, over real sockets: a GeoTIFF goes in through POST /jobs and
comes out findable with pystac-client and viewable as tiles, TileJSON and WMTS."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import httpx
import morecantile
import numpy as np
import psycopg
import pytest
import rasterio
import rasterio.warp
import rasterio.windows
from owslib.wmts import WebMapTileService
from pystac_client import Client
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.transform import from_bounds
from rasterio.vrt import WarpedVRT
from shapely.geometry import shape

from csdr_ingest.synthetic import DEMO_SCENES, write_scene

COLLECTION = "e2e"
SCENE = DEMO_SCENES[0]
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")


def run_job(node, source: Path) -> dict:
    body = {"source": str(source), "collection": COLLECTION}
    assert httpx.post(f"{node.ingest}/jobs", json=body).status_code == 401  # a key is needed
    return node.run_job(source, COLLECTION)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return write_scene(SCENE, tmp_path_factory.mktemp("inbox"))


@pytest.fixture(scope="module")
def item(node, source) -> dict:
    job = run_job(node, source)
    assert job["status"] == "succeeded", job
    assert job["items"] == [{"id": SCENE.name, "collection": COLLECTION}]
    return httpx.get(f"{node.catalog}/collections/{COLLECTION}/items/{SCENE.name}").json()


def item_tiles(node, item) -> str:
    return f"{node.tiler}/collections/{COLLECTION}/items/{item['id']}"


def test_pystac_client_finds_the_item_by_bbox_and_datetime(node, item):
    client = Client.open(node.catalog)
    lon, lat = shape(item["geometry"]).representative_point().coords[0]
    bbox = [lon - 0.01, lat - 0.01, lon + 0.01, lat + 0.01]
    found = client.search(bbox=bbox, datetime="2024-05-12T00:00:00Z/2024-05-12T23:59:59Z")
    assert [i.id for i in found.items()] == [SCENE.name]
    assert not list(client.search(bbox=bbox, datetime="2023-01-01/2023-12-31").items())
    assert not list(client.search(bbox=[10, 10, 10.1, 10.1], datetime="2024").items())


def test_png_tile_pixels_match_the_source(node, item, source):
    lon, lat = shape(item["geometry"]).representative_point().coords[0]
    tile = WEB_MERCATOR.tile(lon, lat, 14)
    url = (
        f"{item_tiles(node, item)}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
        f"?assets={quote('data|bidx=4', safe='')}"
    )
    r = httpx.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    with MemoryFile(r.content) as mem, mem.open() as png:
        served, alpha = png.read(1), png.read(png.count)
    bounds = WEB_MERCATOR.xy_bounds(tile)
    grid = {
        "crs": "EPSG:3857",
        "transform": from_bounds(*bounds, 256, 256),
        "width": 256,
        "height": 256,
        "resampling": Resampling.nearest,
    }
    with rasterio.open(source) as src, WarpedVRT(src, **grid) as vrt:
        expected = vrt.read(4)
    valid = (alpha > 0) & (expected > 0)
    assert valid.mean() > 0.3, "the tile should cover a good part of the scene"
    diff = np.abs(served.astype("int32") - expected.astype("int32"))[valid]
    # Nearest-neighbour on both sides: most pixels identical, the rest off by one source pixel.
    assert np.median(diff) == 0
    assert np.mean(diff <= 50) > 0.9
    assert ((alpha > 0) == (expected > 0)).mean() > 0.97  # nodata stays transparent


def test_tilejson_and_wmts_list_tile_urls_that_answer(node, item):
    params = {"assets": "data|bidx=3,2,1", "rescale": "600,2200"}
    tilejson = httpx.get(
        f"{item_tiles(node, item)}/WebMercatorQuad/tilejson.json", params=params
    ).json()
    west, south, east, north = tilejson["bounds"]
    assert west < item["bbox"][0] + 0.01 and east > item["bbox"][2] - 0.01
    lon, lat = shape(item["geometry"]).representative_point().coords[0]
    tile = WEB_MERCATOR.tile(lon, lat, tilejson["maxzoom"])
    url = tilejson["tiles"][0].format(z=tile.z, x=tile.x, y=tile.y)
    r = httpx.get(url)
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/")

    capabilities = httpx.get(f"{item_tiles(node, item)}/WMTSCapabilities.xml", params=params)
    assert capabilities.status_code == 200
    wmts = WebMapTileService(capabilities.url.__str__(), xml=capabilities.content)
    layer = next(name for name in wmts.contents if "WebMercatorQuad" in name)
    template = wmts.contents[layer].resourceURLs[0]["template"]
    r = httpx.get(template.format(TileMatrix=tile.z, TileCol=tile.x, TileRow=tile.y))
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/")


def test_rasterio_reads_a_window_through_the_wmts_capabilities(node, item):
    capabilities = httpx.URL(
        f"{item_tiles(node, item)}/WMTSCapabilities.xml",
        params={"assets": "data|bidx=3,2,1", "rescale": "600,2200"},
    )
    wmts = WebMapTileService(str(capabilities), xml=httpx.get(capabilities).content)
    layer = next(name for name in wmts.contents if "WebMercatorQuad" in name)
    with rasterio.open(f"WMTS:{capabilities},layer={layer},tilematrixset=WebMercatorQuad") as ds:
        # The item's whole extent at a coarse size: GDAL picks the matching tile matrix.
        west, south, east, north = rasterio.warp.transform_bounds(
            "EPSG:4326", ds.crs, *item["bbox"]
        )
        window = rasterio.windows.from_bounds(west, south, east, north, ds.transform)
        pixels = ds.read(window=window, out_shape=(ds.count, 256, 256))
    assert pixels[:3].std() > 5  # textured imagery, not an empty or error tile
    assert (pixels[3] > 0).mean() > 0.4  # the scene's footprint is opaque


def test_corrupt_tiff_fails_with_a_reason_and_changes_nothing(node, item, source, tmp_path):
    corrupt = tmp_path / "truncated_scene.tif"
    corrupt.write_bytes(source.read_bytes()[:60_000])

    def snapshot():
        with psycopg.connect(
            **{
                k[2:].lower().replace("database", "dbname"): v
                for k, v in node.env.items()
                if k.startswith("PG")
            }
        ) as conn:
            items = conn.execute("SELECT id, content FROM pgstac.items ORDER BY id").fetchall()
        return items, sorted(str(p) for p in node.assets_dir.rglob("*"))

    before = snapshot()
    job = run_job(node, corrupt)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "SourceUnreadable"
    assert "truncated_scene.tif" in job["error"]["description"]
    assert snapshot() == before
