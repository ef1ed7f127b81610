""" "Copy for QGIS": the map links the STAC API hands out with each item and collection open in
GDAL as QGIS opens them (XYZ through the WMS/TMS driver, WMTS through the `WMTS:` driver) and show
the scene, found the way a user finds it: pystac-client, then the link."""

from __future__ import annotations

import httpx
import pystac_client
import rasterio
import rasterio.windows
from owslib.wmts import WebMapTileService

from csdr_ingest.synthetic import DEMO_SCENES, write_scene
from tests.e2e.qgis import assert_same_pixels, centre_tile, expected_false_color, xyz_layer

COLLECTION = "map-links"
SCENE = DEMO_SCENES[1]


def links(document: dict, rel: str) -> dict[str, dict]:
    """A document's links of one rel, by the preset (or document) they draw."""
    found = {}
    for link in document["links"]:
        if link["rel"] == rel:
            parts = link["href"].split("/presets/")
            found[parts[1].split("/")[0] if len(parts) > 1 else "-"] = link
    return found


def test_item_and_collection_map_links_open_in_gdal_like_qgis(node, tmp_path):
    job = node.run_job(write_scene(SCENE, tmp_path), COLLECTION)
    assert job["status"] == "succeeded", job
    catalog = pystac_client.Client.open(node.catalog)
    [found] = catalog.search(collections=[COLLECTION], ids=[SCENE.name]).items()
    item = found.to_dict()
    xyz = links(item, "xyz")
    assert set(xyz) == {"true-color", "false-color", "ndvi"}
    assert all(
        not set("|#&") & set(link["href"]) and link["href"].startswith(node.tiler)
        for link in xyz.values()
    )

    # XYZ: paste the template (QGIS writes {z}; GDAL's TMS service wants ${z}).
    tilejson = links(item, "tilejson")["false-color"]
    z = httpx.get(tilejson["href"]).json()["maxzoom"]
    template = xyz["false-color"]["href"].replace("{", "${")
    tile = centre_tile(item, z)
    window = rasterio.windows.Window(tile.x * 256, tile.y * 256, 512, 512)
    with rasterio.open(xyz_layer(tmp_path / "xyz.xml", template, z)) as ds:
        got = ds.read(window=window)
        bounds = rasterio.windows.bounds(window, ds.transform)
    assert (got[3] == 255).mean() > 0.9, "the block lies inside the scene"
    assert_same_pixels(got[:3], expected_false_color(item, bounds, 512))

    # WMTS: the capabilities link lists the layers it says, and GDAL reads one.
    [wmts] = links(item, "wmts").values()
    assert set(WebMapTileService(wmts["href"]).contents) == set(wmts["wmts:layer"]) == set(xyz)
    with rasterio.open(f"WMTS:{wmts['href']},layer=ndvi,tilematrixset=WebMercatorQuad") as ds:
        overview = ds.read(out_shape=(ds.count, 256, 256))
    assert (overview[3] > 0).mean() > 0.3 and overview[:3].std() > 5

    # The collection's mosaic: the same presets, one layer each (its item_assets name no bands:
    # the link leaves the layers to the document).
    collection = catalog.get_collection(COLLECTION).to_dict()
    [mosaic] = links(collection, "wmts").values()
    assert set(WebMapTileService(mosaic["href"]).contents) == set(xyz)
