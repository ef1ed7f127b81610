"""What QGIS does with a node's tiles, done by GDAL over real sockets: open the preset XYZ template
through GDAL's WMS driver (TMS service) and the preset WMTS through the `WMTS:` driver, and read
the same pixels as a rasterio read of the ingested COG; owslib parses every WMTS document."""

from __future__ import annotations

import httpx
import morecantile
import numpy as np
import pytest
import rasterio
import rasterio.windows
from owslib.wmts import WebMapTileService

from csdr_ingest.synthetic import DEMO_SCENES, write_scene
from tests.e2e.qgis import (
    HALF_WORLD,
    assert_same_pixels,
    centre_tile,
    expected_false_color,
    xyz_layer,
)

COLLECTION = "e2e-tiles"
SCENE = DEMO_SCENES[0]
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")


@pytest.fixture(scope="module")
def item(node, tmp_path_factory) -> dict:
    source = write_scene(SCENE, tmp_path_factory.mktemp("inbox"))
    job = node.run_job(source, COLLECTION)
    assert job["status"] == "succeeded", job
    return httpx.get(f"{node.catalog}/collections/{COLLECTION}/items/{SCENE.name}").json()


def item_base(node, item) -> str:
    return f"{node.tiler}/collections/{COLLECTION}/items/{item['id']}"


def test_gdal_reads_the_preset_xyz_template_like_qgis(node, item, tmp_path):
    tilejson = httpx.get(
        f"{item_base(node, item)}/presets/false-color/WebMercatorQuad/tilejson.json"
    )
    assert tilejson.status_code == 200, tilejson.text
    z = tilejson.json()["maxzoom"]
    tiles = f"{item_base(node, item)}/presets/false-color/tiles/WebMercatorQuad"
    template = f"{tiles}/${{z}}/${{x}}/${{y}}.png"
    assert "|" not in template and "#" not in template
    # GDAL's WMS driver with a TMS service description: what QGIS's XYZ layer is built on.
    description = xyz_layer(tmp_path / "xyz.xml", template, z)
    tile = centre_tile(item, z)
    with rasterio.open(description) as ds:
        assert ds.width == 256 * 2**z
        got = ds.read(window=rasterio.windows.Window(tile.x * 256, tile.y * 256, 512, 512))
        bounds = rasterio.windows.bounds(
            rasterio.windows.Window(tile.x * 256, tile.y * 256, 512, 512), ds.transform
        )
    assert (got[3] == 255).mean() > 0.9, "the block lies inside the scene"
    assert_same_pixels(got[:3], expected_false_color(item, bounds, 512))


def test_gdal_reads_the_preset_wmts_like_qgis(node, item):
    url = f"{item_base(node, item)}/presets/WMTSCapabilities.xml"
    with rasterio.open(f"WMTS:{url},layer=false-color,tilematrixset=WebMercatorQuad") as ds:
        assert ds.crs.to_epsg() == 3857
        z = int(round(np.log2(2 * HALF_WORLD / 256 / ds.res[0])))
        tile = centre_tile(item, z)
        left, _, _, top = WEB_MERCATOR.xy_bounds(tile)
        window = rasterio.windows.from_bounds(
            left, top - 512 * ds.res[1], left + 512 * ds.res[0], top, ds.transform
        )
        got = ds.read(window=window.round_offsets().round_lengths())
        bounds = rasterio.windows.bounds(window.round_offsets().round_lengths(), ds.transform)
        # The whole layer at a coarse size: GDAL picks a coarser tile matrix, still the scene.
        overview = ds.read(out_shape=(ds.count, 256, 256))
    assert_same_pixels(got[:3], expected_false_color(item, bounds, 512))
    assert (overview[3] > 0).mean() > 0.3 and overview[:3].std() > 5


def test_owslib_parses_every_wmts_document_we_serve(node, item):
    search = httpx.post(f"{node.tiler}/searches/register", json={"collections": [COLLECTION]})
    search_id = search.json()["id"]
    raw = {"assets": "data|bidx=3,2,1", "rescale": "600,2200"}
    documents = {
        f"{item_base(node, item)}/presets/WMTSCapabilities.xml": {},
        f"{node.tiler}/collections/{COLLECTION}/presets/WMTSCapabilities.xml": {},
        f"{node.tiler}/searches/{search_id}/presets/WMTSCapabilities.xml": {},
        f"{item_base(node, item)}/WMTSCapabilities.xml": raw,
        f"{node.tiler}/collections/{COLLECTION}/WMTSCapabilities.xml": raw,
        f"{node.tiler}/searches/{search_id}/WMTSCapabilities.xml": raw,
    }
    for url, params in documents.items():
        r = httpx.get(url, params=params, timeout=30)
        assert r.status_code == 200, (url, r.text)
        wmts = WebMapTileService(str(r.url), xml=r.content)
        assert wmts.contents, url
        assert all(layer.resourceURLs for layer in wmts.contents.values()), url
        links = [set(layer.tilematrixsetlinks) for layer in wmts.contents.values()]
        assert {"WebMercatorQuad"} in links, url
        if "/presets/" in url:
            assert set(wmts.contents) == {"true-color", "false-color", "ndvi"}, url
            assert len(r.content) < 20_000, url


def test_tiles_carry_an_etag_and_answer_304(node, item):
    z = 13
    tile = centre_tile(item, z)
    url = f"{item_base(node, item)}/presets/ndvi/tiles/WebMercatorQuad/{z}/{tile.x}/{tile.y}.png"
    r = httpx.get(url)
    assert r.status_code == 200 and r.headers["etag"]
    again = httpx.get(url, headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
