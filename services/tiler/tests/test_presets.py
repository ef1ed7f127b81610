"""Presets by name on real ingested items: each renders the bands its name promises, stretched by
the item's stored statistics, through titiler's own endpoints; bad input is a 4xx, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient
from owslib.wmts import WebMapTileService
from psycopg.types.json import Jsonb

from csdr_access.admin import add_org, issue_key
from csdr_tiler.app import create_app
from csdr_tiler.settings import Settings
from services.tiler.tests.scenes import (
    BAND,
    Ingested,
    correlation,
    decode,
    source_pixels,
    to_8_bit,
)

Z = 13


@pytest.fixture(scope="module")
def client(db, pg_cluster) -> Iterator[TestClient]:
    with TestClient(create_app(Settings())) as c:
        yield c


@pytest.fixture(scope="module")
def ms(db) -> Ingested:
    return db["ms"]


def tile_url(base: str, preset: str, tile) -> str:
    return f"{base}/presets/{preset}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"


def test_false_color_red_channel_follows_the_nir_band(client, ms):
    tile = ms.centre_tile(Z)
    r = client.get(tile_url(ms.url, "false-color", tile))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    img = decode(r.content)
    assert img.shape == (4, 256, 256) and img.dtype == np.uint8
    valid = img[3] > 0
    assert valid.mean() > 0.9
    for channel, band in enumerate(("nir", "red", "green")):
        source = source_pixels(ms.cog, tile, [BAND[band]])[0]
        expected = to_8_bit(source, *ms.stretch(BAND[band]))
        got = img[channel].astype("float64")
        assert correlation(got[valid], expected[valid]) > 0.98, band
        assert np.median(np.abs(got[valid] - expected[valid])) <= 2, band
    # The first channel is not the red band rendered the same way (true colour's first channel).
    red = to_8_bit(source_pixels(ms.cog, tile, [BAND["red"]])[0], *ms.stretch(BAND["red"]))
    assert np.median(np.abs(img[0][valid] - red[valid])) > 5


def test_true_color_renders_red_green_blue_stretched_by_the_stored_statistics(client, ms):
    tile = ms.centre_tile(Z)
    img = decode(client.get(tile_url(ms.url, "true-color", tile)).content)
    valid = img[3] > 0
    for channel, band in enumerate(("red", "green", "blue")):
        source = source_pixels(ms.cog, tile, [BAND[band]])[0]
        expected = to_8_bit(source, *ms.stretch(BAND[band]))
        assert np.median(np.abs(img[channel][valid] - expected[valid])) <= 2, band
    # Stretched, not squeezed into the data type's range: the image uses the 8-bit range.
    assert img[:3][:, valid].std() > 20


def test_ndvi_uses_a_colour_map_green_where_vegetation_is(client, ms):
    tile = ms.centre_tile(Z)
    r = client.get(tile_url(ms.url, "ndvi", tile))
    assert r.status_code == 200, r.text
    img = decode(r.content).astype("float64")
    nir, red = source_pixels(ms.cog, tile, [BAND["nir"], BAND["red"]])
    ndvi = (nir - red) / (nir + red)
    valid = img[3] > 0
    # rdylgn: red for low NDVI, green for high; green minus red follows NDVI.
    assert correlation((img[1] - img[0])[valid], ndvi[valid]) > 0.9
    assert img.shape[0] == 4


def test_pan_preset_on_a_panchromatic_item_and_not_on_a_multispectral_one(client, db, ms):
    pan = db["pan"]
    tile = pan.centre_tile(Z)
    r = client.get(tile_url(pan.url, "pan", tile))
    assert r.status_code == 200, r.text
    img = decode(r.content)
    assert img.shape == (2, 256, 256)  # grey + alpha
    expected = to_8_bit(source_pixels(pan.cog, tile, [1])[0], *pan.stretch(1))
    assert np.median(np.abs(img[0] - expected)) <= 2
    missing = client.get(tile_url(ms.url, "pan", ms.centre_tile(Z)))
    assert missing.status_code == 404
    assert "available: false-color, ndvi, true-color" in missing.json()["detail"]


def test_unknown_preset_is_404_naming_the_presets(client, ms):
    r = client.get(tile_url(ms.url, "infrared", ms.centre_tile(Z)))
    assert r.status_code == 404
    assert "unknown preset 'infrared'" in r.json()["detail"]


def test_preset_tilejson_has_bounds_zooms_and_a_template_qgis_keeps(client, ms):
    r = client.get(f"{ms.url}/presets/true-color/WebMercatorQuad/tilejson.json")
    assert r.status_code == 200, r.text
    tilejson = r.json()
    # The extent of the asset's grid (rio-tiler), which holds the item's valid-pixel footprint.
    assert tilejson["bounds"] == pytest.approx(ms.item["bbox"], abs=0.01)
    assert 8 <= tilejson["minzoom"] < tilejson["maxzoom"] <= 14
    (template,) = tilejson["tiles"]
    assert "|" not in template and "#" not in template and "%7C" not in template.upper()
    tile = ms.centre_tile(tilejson["maxzoom"])
    url = template.format(z=tile.z, x=tile.x, y=tile.y)
    assert client.get(url).status_code == 200


def test_preset_wmts_has_a_layer_per_preset_with_the_item_extent(client, ms):
    with psycopg.connect(autocommit=True) as conn:
        add_org(conn, "WMTS user", "TH", "partner", "test")
        key = issue_key(conn, "WMTS user", ["read"], "test")[0]
    r = client.get(f"{ms.url}/presets/WMTSCapabilities.xml", params={"api_key": key})
    assert r.status_code == 200, r.text
    assert len(r.content) < 20_000  # titiler's lists every tile matrix set: 190-390 KB
    wmts = WebMapTileService(str(r.url), xml=r.content)
    assert set(wmts.contents) == {"true-color", "false-color", "ndvi"}
    assert list(wmts.tilematrixsets) == ["WebMercatorQuad"]
    layer = wmts.contents["false-color"]
    assert layer.boundingBoxWGS84 == pytest.approx(tuple(ms.item["bbox"]), abs=1e-9)
    limits = layer.tilematrixsetlinks["WebMercatorQuad"].tilematrixlimits
    tilejson = client.get(f"{ms.url}/presets/false-color/WebMercatorQuad/tilejson.json").json()
    assert sorted(map(int, limits)) == list(range(tilejson["minzoom"], tilejson["maxzoom"] + 1))
    z = tilejson["maxzoom"]
    tile = ms.centre_tile(z)
    assert limits[str(z)].mintilecol <= tile.x <= limits[str(z)].maxtilecol
    assert limits[str(z)].mintilerow <= tile.y <= limits[str(z)].maxtilerow
    template = layer.resourceURLs[0]["template"]
    assert f"api_key={key}" in template  # QGIS sends no header for WMTS tiles
    url = template.format(TileMatrix=tile.z, TileCol=tile.x, TileRow=tile.y)
    via_wmts = client.get(url)
    assert via_wmts.status_code == 200
    direct = client.get(tile_url(ms.url, "false-color", tile))
    assert via_wmts.content == direct.content


def test_collection_preset_mosaic_and_its_wmts(client, ms):
    base = f"/collections/{ms.collection}"
    tile = ms.centre_tile(Z)
    r = client.get(tile_url(base, "false-color", tile))
    assert r.status_code == 200, r.text
    img = decode(r.content)
    nir = source_pixels(ms.cog, tile, [BAND["nir"]])[0]
    valid = img[3] > 0
    assert correlation(img[0][valid], nir[valid]) > 0.98
    doc = client.get(f"{base}/presets/WMTSCapabilities.xml")
    wmts = WebMapTileService(str(doc.url), xml=doc.content)
    assert set(wmts.contents) == {"true-color", "false-color", "ndvi"}
    template = wmts.contents["ndvi"].resourceURLs[0]["template"]
    assert urlsplit(template).path.startswith(f"{base}/presets/ndvi/tiles/WebMercatorQuad/")


def test_search_preset_mosaic_and_its_wmts(client, ms):
    search = client.post("/searches/register", json={"collections": [ms.collection]}).json()
    base = f"/searches/{search['id']}"
    tile = ms.centre_tile(Z)
    r = client.get(tile_url(base, "true-color", tile))
    assert r.status_code == 200, r.text
    doc = client.get(f"{base}/presets/WMTSCapabilities.xml")
    assert doc.status_code == 200, doc.text
    wmts = WebMapTileService(str(doc.url), xml=doc.content)
    assert set(wmts.contents) == {"true-color", "false-color", "ndvi"}


def test_raw_titiler_parameters_still_work_next_to_presets(client, ms):
    tile = ms.centre_tile(Z)
    r = client.get(
        f"{ms.url}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png",
        params={"assets": "data|bidx=4", "rescale": "0,5000"},
    )
    assert r.status_code == 200, r.text
    expected = to_8_bit(source_pixels(ms.cog, tile, [4])[0], 0, 5000)
    assert np.median(np.abs(decode(r.content)[0] - expected)) <= 1


@pytest.mark.parametrize(
    ("path", "params", "status", "says"),
    [
        ("presets/nope/tiles/WebMercatorQuad/{z}/{x}/{y}.png", {}, 404, "unknown preset"),
        ("presets/true-color/tiles/WebMercatorQuad/40/1/1.png", {}, 400, "zoom 40"),
        ("tiles/WebMercatorQuad/40/1/1.png", {"assets": "data"}, 400, "zoom 40"),
        ("presets/true-color/tiles/WebMercatorQuad/3/9/9.png", {}, 400, "outside"),
        ("presets/true-color/tiles/WebMercatorQuad/13/0/0.png", {}, 404, "outside bounds"),
        (
            "tiles/WebMercatorQuad/{z}/{x}/{y}.png",
            {"assets": "data", "expression": "(b4-b3)/(b4+b3"},
            400,
            "expression",
        ),
        (
            "tiles/WebMercatorQuad/{z}/{x}/{y}.png",
            {"assets": "data", "expression": "(b9-b3)/(b9+b3)"},
            400,
            "b9",
        ),
        ("tiles/WebMercatorQuad/{z}/{x}/{y}.png", {"assets": "nope"}, 404, "nope"),
    ],
)
def test_bad_input_is_a_4xx_that_names_the_problem(client, ms, path, params, status, says):
    tile = ms.centre_tile(Z)
    url = f"{ms.url}/" + path.format(z=tile.z, x=tile.x, y=tile.y)
    r = client.get(url, params=params)
    assert r.status_code == status, r.text
    assert says in r.json()["detail"]


def area_around(ms: Ingested, half_deg: float = 0.01) -> dict:
    """A GeoJSON square feature at the footprint's centre, wholly inside the scene."""
    west, south, east, north = ms.item["bbox"]
    lon, lat = (west + east) / 2, (south + north) / 2
    ring = [
        [lon - half_deg, lat - half_deg],
        [lon + half_deg, lat - half_deg],
        [lon + half_deg, lat + half_deg],
        [lon - half_deg, lat + half_deg],
        [lon - half_deg, lat - half_deg],
    ]
    return {
        "type": "Feature",
        "properties": {},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


def source_ndvi_in(ms: Ingested, feature: dict) -> np.ndarray:
    """NDVI of the COG's pixels inside the feature, read by rasterio directly."""
    import rasterio
    from rasterio.features import geometry_mask
    from rasterio.warp import transform_geom
    from rasterio.windows import from_bounds as window_from_bounds
    from shapely.geometry import shape

    with rasterio.open(ms.cog) as src:
        geom = transform_geom("EPSG:4326", src.crs, feature["geometry"])
        window = (
            window_from_bounds(*shape(geom).bounds, src.transform).round_offsets().round_lengths()
        )
        nir, red = src.read([BAND["nir"], BAND["red"]], window=window).astype("float64")
        inside = ~geometry_mask([geom], nir.shape, src.window_transform(window))
    return ((nir - red) / (nir + red))[inside & (nir > 0)]


def test_ndvi_statistics_over_a_geojson_area_for_the_item_and_the_mosaic(client, ms):
    feature = area_around(ms)
    expected = source_ndvi_in(ms, feature)
    for base in (ms.url, f"/collections/{ms.collection}"):
        r = client.post(f"{base}/presets/ndvi/statistics", json=feature, params={"max_size": 2048})
        assert r.status_code == 200, (base, r.text)
        (stats,) = r.json()["properties"]["statistics"].values()
        assert stats["mean"] == pytest.approx(expected.mean(), abs=0.02), base
        assert stats["min"] >= -1 and stats["max"] <= 1
        counts, edges = stats["histogram"]
        assert sum(counts) > 0.8 * expected.size and len(edges) == len(counts) + 1
    # The raw titiler expression gives the same NDVI.
    raw = client.post(
        f"{ms.url}/statistics",
        json=feature,
        params={"assets": "data", "expression": "(b4-b3)/(b4+b3)", "max_size": 2048},
    )
    (raw_stats,) = raw.json()["properties"]["statistics"].values()
    assert raw_stats["mean"] == pytest.approx(expected.mean(), abs=0.02)


def test_point_preview_and_cropped_geotiff(client, ms):
    import rasterio
    from rasterio.io import MemoryFile

    west, south, east, north = ms.item["bbox"]
    lon, lat = (west + east) / 2, (south + north) / 2
    point = client.get(f"{ms.url}/presets/false-color/point/{lon},{lat}")
    assert point.status_code == 200, point.text
    with rasterio.open(ms.cog) as src:
        (x,), (y,) = rasterio.warp.transform("EPSG:4326", src.crs, [lon], [lat])
        row, col = src.index(x, y)
        expected = src.read([4, 3, 2], window=((row, row + 1), (col, col + 1)))
    # The point answers the preset's bands (NIR, red, green) as stored, before any stretch.
    assert point.json()["values"] == [float(v) for v in expected.ravel()]

    preview = client.get(f"{ms.url}/presets/true-color/preview.png", params={"max_size": 256})
    assert preview.status_code == 200 and decode(preview.content).shape[0] == 4

    bbox = f"{lon - 0.02},{lat - 0.02},{lon + 0.02},{lat + 0.02}"
    crop = client.get(f"{ms.url}/bbox/{bbox}.tif", params={"assets": "data|bidx=4"})
    assert crop.status_code == 200, crop.text
    with MemoryFile(crop.content) as mem, mem.open() as tif:
        assert tif.crs.to_epsg() == 4326
        assert tif.bounds.left == pytest.approx(lon - 0.02, abs=1e-6)
        band = tif.read(1)
        assert band.dtype == np.uint16 and band.max() > 0


def offline_scene(item: dict, collection: str, n: int) -> dict:
    """An offline scene as ingest registers one (the delivered files, no COG), acquired
    after `item`."""
    return dict(
        item,
        id=f"{item['id']}-offline-{n}",
        collection=collection,
        links=[],
        properties={"datetime": f"{2030 + n}-01-01T00:00:00Z", "order:status": "orderable"},
        assets={
            "thumbnail": {"href": "/a/t.jpg", "type": "image/jpeg", "roles": ["thumbnail"]},
            "metadata": {"href": "/a/m.xml", "type": "application/xml", "roles": ["metadata"]},
        },
    )


def test_a_collection_whose_newest_scenes_are_offline_keeps_its_wmts(client, ms):
    """Offline scenes newer than every online one: the mosaic's layers and zooms come from the
    online scenes, as with no offline scene at all (the reader refused the newest scene before:
    400). A collection of offline scenes only has no mosaic: 404."""
    mixed, archive = f"{ms.collection}-mixed", f"{ms.collection}-archive"
    with psycopg.connect(autocommit=True) as conn:
        stored = conn.execute(
            "SELECT content FROM pgstac.collections WHERE id = %s", (ms.collection,)
        ).fetchone()[0]
        for cid in (mixed, archive):
            conn.execute("SELECT pgstac.create_collection(%s)", (Jsonb(stored | {"id": cid}),))
        online = dict(ms.item, collection=mixed, links=[])
        conn.execute("SELECT pgstac.create_item(%s)", (Jsonb(online),))
        for n in range(3):
            for cid in (mixed, archive):
                conn.execute(
                    "SELECT pgstac.create_item(%s)", (Jsonb(offline_scene(ms.item, cid, n)),)
                )
    doc = client.get(f"/collections/{mixed}/presets/WMTSCapabilities.xml")
    assert doc.status_code == 200, doc.text
    wmts = WebMapTileService(str(doc.url), xml=doc.content)
    assert set(wmts.contents) == {"true-color", "false-color", "ndvi"}
    alone = client.get(f"/collections/{ms.collection}/presets/WMTSCapabilities.xml")
    expected = WebMapTileService(str(alone.url), xml=alone.content).contents["ndvi"]
    limits = wmts.contents["ndvi"].tilematrixsetlinks["WebMercatorQuad"].tilematrixlimits
    assert sorted(limits) == sorted(expected.tilematrixsetlinks["WebMercatorQuad"].tilematrixlimits)
    tilejson = client.get(f"/collections/{mixed}/presets/ndvi/WebMercatorQuad/tilejson.json")
    assert tilejson.status_code == 200, tilejson.text
    tile = ms.centre_tile(Z)
    r = client.get(tile_url(f"/collections/{mixed}", "true-color", tile))
    assert r.status_code == 200, r.text
    assert decode(r.content)[3].mean() > 0  # the online scene's pixels under the offline ones
    none = client.get(f"/collections/{archive}/presets/WMTSCapabilities.xml")
    assert none.status_code == 404 and "no online items" in none.text


def test_a_registered_search_mosaics_online_scenes_only(client, ms):
    """A registered search (the portal's, above a few hundred results) whose newest scenes are
    offline: like the collection's mosaic, its tiles show the online scene under them and its
    scene lists name no offline scene; the search's own filter still applies."""
    mixed = f"{ms.collection}-searched"
    with psycopg.connect(autocommit=True) as conn:
        stored = conn.execute(
            "SELECT content FROM pgstac.collections WHERE id = %s", (ms.collection,)
        ).fetchone()[0]
        conn.execute("SELECT pgstac.create_collection(%s)", (Jsonb(stored | {"id": mixed}),))
        conn.execute("SELECT pgstac.create_item(%s)", (Jsonb(dict(ms.item, collection=mixed)),))
        offline = [offline_scene(ms.item, mixed, n) for n in range(3)]
        for scene in offline:
            conn.execute("SELECT pgstac.create_item(%s)", (Jsonb(scene),))
    newest_first = [{"field": "datetime", "direction": "desc"}]
    search = client.post(
        "/searches/register", json={"collections": [mixed], "sortby": newest_first}
    ).json()["id"]
    tile = ms.centre_tile(Z)
    r = client.get(tile_url(f"/searches/{search}", "true-color", tile))
    assert r.status_code == 200, r.text
    assert decode(r.content)[3].mean() > 0  # the online scene's pixels under the offline ones
    scenes = f"/searches/{search}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}/assets"
    listed = client.get(scenes)
    assert listed.status_code == 200, listed.text
    assert [s["id"] for s in listed.json()] == [ms.item["id"]]

    # Its own filter and the online rule together: of the two ids it names, the online one.
    named = {"op": "in", "args": [{"property": "id"}, [offline[0]["id"], ms.item["id"]]]}
    body = {"collections": [mixed], "filter": named, "filter-lang": "cql2-json"}
    narrowed = client.post("/searches/register", json=body).json()["id"]
    listed = client.get(scenes.replace(search, narrowed))
    assert [s["id"] for s in listed.json()] == [ms.item["id"]]
    # Registered with no other filter: only offline scenes named, nothing to draw.
    only_offline = {"op": "=", "args": [{"property": "id"}, offline[0]["id"]]}
    body = {"collections": [mixed], "filter": only_offline, "filter-lang": "cql2-json"}
    none = client.post("/searches/register", json=body).json()["id"]
    assert client.get(scenes.replace(search, none)).json() == []
    r = client.get(tile_url(f"/searches/{none}", "true-color", tile))
    assert r.status_code in (204, 404), r.text
