"""The portal in a real browser (Debian's Chromium through Playwright) over a real node: catalog,
tiler and push as processes over pgSTAC, 400 synthetic Gaofen/ZY/CBERS scenes, one ingested
demo scene with real tiles, and a partners-only collection. Each test drives the page as a user
would and checks the answer against the APIs themselves."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import morecantile
import numpy as np
import psycopg
import pytest
from psycopg.types.json import Jsonb
from pypgstac.db import PgstacDB
from pypgstac.load import Loader, Methods
from rasterio.io import MemoryFile

from conftest import free_port
from csdr_access.admin import add_org, issue_key, set_policy
from csdr_access.quotas import set_approval
from csdr_ingest.synthetic import DEMO_SCENES, write_scene
from csdr_portal.vendor import STATIC_DIR
from csdr_storage.availability import OFFLINE_FILTER, ONLINE_FILTER, is_online
from tests.e2e import catalog_scenes
from tests.e2e.browser import Watched, chromium, watch
from tests.e2e.processes import service
from tests.fixtures import CRESDA_WFV
from tests.support.lookalike import write_lookalike

DEMO = "csdr-demo"
OFFLINE_COLLECTION = "gf1-wfv"
OFFLINE_ID = "GF1_WFV3_20200523_L1A0004819525"
PARTNERS_ONLY = "gf6-pms-partners"
SENSOR = "gf1-wfv-l1a"
MESSAGES_ZH = STATIC_DIR / "messages" / "zh.json"


@pytest.fixture(scope="module")
def seeded(node, portal, pg_cluster, tmp_path_factory) -> dict[str, str]:
    """400 catalogue scenes, one ingested demo scene, a partners-only collection; the partner's
    key."""
    catalog_scenes.load(node.env, 400)
    for demo in DEMO_SCENES[:2]:  # two overlapping passes, 4 km each: quick to ingest
        scene = dataclasses.replace(demo, size=512)
        job = node.run_job(write_scene(scene, tmp_path_factory.mktemp("demo")), DEMO)
        assert job["status"] == "succeeded", job
    dbname = node.env["PGDATABASE"]
    options = "options='-c search_path=pgstac,public'"
    with psycopg.connect(f"{pg_cluster.conninfo(dbname)} {options}", autocommit=True) as conn:
        partners = catalog_scenes.collection(catalog_scenes.SENSORS[0])
        partners.update(id=PARTNERS_ONLY, title="GF-6 PMS (partners only)")
        items = [dict(i, collection=PARTNERS_ONLY) for i in catalog_scenes.items(5, seed=9)]
        for item in items:
            item["id"] = f"P_{item['id']}"
        loader = Loader(PgstacDB(connection=conn))
        loader.load_collections(iter([partners]), insert_mode=Methods.upsert)
        loader.load_items(iter(items), insert_mode=Methods.insert)
        add_org(conn, "Partner", "TH", "partner", "test")
        set_policy(conn, PARTNERS_ONLY, "partners", ["Partner"], "test")
        key = issue_key(conn, "Partner", ["read"], "test")[0]
    return {"partner_key": key}


@pytest.fixture(scope="module")
def browser(seeded) -> Iterator:
    with chromium() as b:
        yield b


def settle(w: Watched) -> None:
    """Wait until the page has started and has no request or flow under way."""
    w.page.wait_for_selector('body[data-ready="true"][data-pending="0"]', state="attached")


def rows(w: Watched) -> list[str]:
    return w.page.eval_on_selector_all("#results li", "els => els.map(e => e.dataset.key)")


def rendered_footprints(w: Watched) -> set[str]:
    """Keys of the footprints the map has drawn (whatever part of them is in view)."""
    return set(
        w.page.evaluate(
            """() => { const m = window.csdrPortal.map;
                 return m.queryRenderedFeatures({layers: ['footprints-fill']})
                   .map(f => f.properties.key); }"""
        )
    )


def wait_idle(w: Watched) -> None:
    w.page.evaluate(
        """() => new Promise(r => { const m = window.csdrPortal.map;
             if (m.loaded() && !m.isMoving()) r(); else m.once('idle', r); })"""
    )


def catalog_search(node, body: dict) -> dict:
    r = httpx.post(f"{node.catalog}/search", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_search_counts_pages_areas_and_map(browser, node, portal):
    w = watch(browser.new_context(viewport={"width": 1280, "height": 800}))
    w.page.goto(portal)
    settle(w)
    # The map draws through WebGL, here Chromium's software renderer (SwiftShader): the
    # context MapLibre made is live and is its canvas's own (asking the canvas creates none).
    is_webgl, lost, own, renderer = w.page.evaluate(
        """() => { const m = window.csdrPortal.map, gl = m.painter.context.gl;
             const c = m.getCanvas(), info = gl.getExtension('WEBGL_debug_renderer_info');
             const kind = gl instanceof WebGL2RenderingContext ? 'webgl2' : 'webgl';
             return [gl instanceof WebGL2RenderingContext || gl instanceof WebGLRenderingContext,
                     gl.isContextLost(), c.getContext(kind) === gl,
                     info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : '']; }"""
    )
    assert is_webgl and not lost and own, (is_webgl, lost, own)
    assert "SwiftShader" in renderer, renderer

    # Sensor + cloud <= 10 + dates, set through the controls.
    w.page.check(f"#collection-{SENSOR}")
    settle(w)
    w.page.fill("#from", "2021-01-01")
    settle(w)
    w.page.fill("#to", "2023-12-31")
    settle(w)
    w.page.fill("#cloud", "10")
    settle(w)
    body = w.posts("/search")[-1]
    assert body["collections"] == [SENSOR]
    assert body["filter"] == {"op": "<=", "args": [{"property": "eo:cloud_cover"}, 10]}
    assert body["datetime"] == "2021-01-01T00:00:00Z/2023-12-31T23:59:59Z"
    expected = catalog_search(node, {k: v for k, v in body.items() if k != "token"})
    shown = int(w.page.get_attribute("#total", "data-count"))
    assert shown == expected["numberMatched"] > 0
    page_one = rows(w)
    assert page_one == [f"{f['collection']}/{f['id']}" for f in expected["features"]]
    clouds = [float(c) for c in re.findall(r"(\d+(?:\.\d+)?) %", w.page.inner_text("#results"))]
    assert len(clouds) == len(page_one) and max(clouds) <= 10
    wait_idle(w)
    assert rendered_footprints(w) == set(page_one), "footprints on the map = rows on the page"
    # The page marks when each search's results are on the map (the portal bench reads it).
    answered, on_map = w.page.evaluate(
        """() => ['search-answered', 'results-on-map']
                 .map(n => performance.getEntriesByName('csdr:' + n).length)"""
    )
    assert on_map == answered >= 5, (on_map, answered)
    shot = png_pixels(w.page.locator("#map").screenshot())[:3].reshape(3, -1).T.astype(int)
    outline = np.abs(shot - [0x1D, 0x4F, 0x91]).max(axis=1) < 40  # the footprints' line colour
    assert outline.sum() > 200, "footprint outlines are on screen"

    # The whole result set exported: every matching scene, as GeoJSON and as CSV.
    everything = catalog_search(
        node, {k: v for k, v in body.items() if k != "token"} | {"limit": 1000}
    )
    wanted = sorted(f["id"] for f in everything["features"])
    assert len(wanted) == shown
    with w.page.expect_download() as got:
        w.page.click("#export-geojson")
    exported = json.loads(Path(got.value.path()).read_text())
    assert sorted(f["id"] for f in exported["features"]) == wanted
    with w.page.expect_download() as got:
        w.page.click("#export-csv")
    lines = Path(got.value.path()).read_text().splitlines()
    assert lines[0].startswith("collection,id,datetime")
    assert sorted(line.split(",")[1] for line in lines[1:]) == wanted

    # The tree's count for the sensor is the aggregation over the same filters.
    tree_count = w.page.inner_text(f"#collection-{SENSOR} ~ .count")
    assert tree_count == f"({shown})"

    # Hovering a row lights its footprint; a click on a footprint selects its row.
    w.page.hover(f'#results li[data-key="{page_one[0]}"]')
    state = w.page.evaluate(
        "k => window.csdrPortal.map.getFeatureState({source: 'footprints', id: k})", page_one[0]
    )
    assert state.get("hover") is True
    # ... and the mouse over a footprint lights its row.
    x, y, top = w.page.evaluate(
        """k => { const m = window.csdrPortal.map;
             const f = m.queryRenderedFeatures({layers: ['footprints-fill']})
               .find(f => f.properties.key === k);
             const c = f.geometry.coordinates[0];
             const p = m.project([(c[0][0] + c[2][0]) / 2, (c[0][1] + c[2][1]) / 2]);
             const hit = m.queryRenderedFeatures(p, {layers: ['footprints-fill']})[0];
             return [p.x, p.y, hit.properties.key]; }""",
        page_one[-1],
    )
    canvas = w.page.locator("#map canvas").bounding_box()
    w.page.mouse.move(canvas["x"] + x, canvas["y"] + y)
    w.page.wait_for_selector(f'#results li.hover[data-key="{top}"]')

    # Paging: a page of 20, then the next page holds other scenes. A search that leaves the
    # mosaic as it was leaves the footprint layers' zoom range alone: MapLibre re-tiles a source
    # whenever a layer's range is set, a frame and every footprint tile made again.
    w.page.evaluate(
        """() => { const m = window.csdrPortal.map, set = m.setLayerZoomRange.bind(m);
                 window.zoomRangesSet = 0;
                 m.setLayerZoomRange = (...a) => { window.zoomRangesSet++; return set(...a); }; }"""
    )
    w.page.fill("#cloud", "100")
    settle(w)
    assert w.page.get_attribute("body", "data-mosaic") == "0"
    assert w.page.evaluate("window.zoomRangesSet") == 0
    w.page.select_option("#limit", "20")
    settle(w)
    assert w.posts("/search")[-1]["limit"] == 20
    first = rows(w)
    assert len(first) == 20
    w.page.click("#next")
    settle(w)
    second = rows(w)
    assert len(second) == 20 and not set(first) & set(second)
    assert "token" in w.posts("/search")[-1]
    w.page.go_back()
    settle(w)
    assert rows(w) == first

    # A box dragged on the map reaches /search as that box: the corners where the mouse was
    # pressed and released, as the map places them.
    w.page.click("#draw-box")
    w.page.evaluate(
        """() => { window.drag = [];
             const m = window.csdrPortal.map;
             const record = e => { const r = m.getCanvas().getBoundingClientRect();
               const l = m.unproject([e.clientX - r.left, e.clientY - r.top]);
               window.drag.push([l.lng, l.lat]); };
             window.addEventListener('mousedown', record, true);
             window.addEventListener('mouseup', record, true); }"""
    )
    canvas = w.page.locator("#map canvas").bounding_box()
    w.page.mouse.move(canvas["x"] + 300, canvas["y"] + 200)
    w.page.mouse.down()
    w.page.mouse.move(canvas["x"] + 700, canvas["y"] + 500, steps=5)
    w.page.mouse.up()
    settle(w)
    (west, north), (east, south) = w.page.evaluate("window.drag")
    sent = w.posts("/search")[-1]["bbox"]
    assert np.allclose(sent, [west, south, east, north], atol=1e-3), (sent, west, south)
    assert "intersects" not in w.posts("/search")[-1]
    in_url = [float(v) for v in parse_qs(urlsplit(w.page.url).query)["bbox"][0].split(",")]
    assert np.allclose(in_url, [west, south, east, north], atol=1e-4)

    # An uploaded GeoJSON polygon reaches /search as `intersects`.
    polygon = {
        "type": "Polygon",
        "coordinates": [[[100, 30], [112, 30], [112, 40], [106, 44], [100, 30]]],
    }
    upload = {"type": "Feature", "properties": {}, "geometry": polygon}
    w.page.set_input_files(
        "#upload",
        files=[
            {
                "name": "area.geojson",
                "mimeType": "application/geo+json",
                "buffer": json.dumps(upload).encode(),
            }
        ],
    )
    settle(w)
    sent_body = w.posts("/search")[-1]
    assert sent_body["intersects"] == polygon and "bbox" not in sent_body
    expected = catalog_search(node, {k: v for k, v in sent_body.items() if k != "token"})
    assert int(w.page.get_attribute("#total", "data-count")) == expected["numberMatched"]

    assert not w.errors, w.errors
    assert not w.blocked, w.blocked
    w.context.close()


def png_pixels(data: bytes) -> np.ndarray:
    with MemoryFile(data) as mem, mem.open() as ds:
        return ds.read()


def test_scene_tiles_qgis_link_and_shared_url(browser, node, portal, seeded):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=portal)
    w = watch(context)
    tiles: list[tuple[str, int]] = []
    w.page.on("response", lambda r: "/tiles/" in r.url and tiles.append((r.url, r.status)))
    w.page.goto(f"{portal}/?c={DEMO}")
    settle(w)
    key = f"{DEMO}/{DEMO_SCENES[0].name}"
    # Filters the shared URL must restore: dates (the first demo pass only) and a typed box.
    w.page.fill("#from", "2024-05-01")
    settle(w)
    w.page.fill("#to", "2024-05-31")
    settle(w)
    w.page.fill("#bbox-text", "118.5,37.5,119.5,38.5")
    w.page.press("#bbox-text", "Enter")
    settle(w)
    assert rows(w) == [key]
    w.page.click(f'#results li[data-key="{key}"]')
    w.page.wait_for_selector("#scene:not([hidden])")
    wait_idle(w)
    preset_tiles = [(u, s) for u, s in tiles if "/presets/true-color/tiles/" in u]
    assert preset_tiles and all(s == 200 for _, s in preset_tiles), tiles
    assert w.page.get_attribute(f'#results li[data-key="{key}"]', "aria-selected") == "true"

    # "Copy XYZ for QGIS" gives the item's own xyz link; one tile from it is a PNG.
    item = httpx.get(f"{node.catalog}/collections/{DEMO}/items/{key.split('/', 1)[1]}").json()
    [xyz] = [
        link["href"]
        for link in item["links"]
        if link["rel"] == "xyz" and "/true-color/" in link["href"]
    ]
    w.page.click("#copy-xyz")
    assert w.page.evaluate("navigator.clipboard.readText()") == xyz
    [wmts] = [link["href"] for link in item["links"] if link["rel"] == "wmts"]
    assert w.page.get_attribute("#wmts-link", "href") == wmts
    assert httpx.get(wmts).headers["content-type"].startswith("application/xml")
    [tilejson] = [
        link["href"]
        for link in item["links"]
        if link["rel"] == "tilejson" and "/true-color/" in link["href"]
    ]
    assert w.page.get_attribute("#tilejson-link", "href") == tilejson
    download = w.page.get_attribute("#download-link", "href")
    assert download == item["assets"]["data"]["href"]
    ranged = httpx.get(download, headers={"Range": "bytes=0-3"})
    assert ranged.status_code == 206 and ranged.content[:2] in (b"II", b"MM"), "a GeoTIFF"
    tile_url = preset_tiles[0][0]
    z, x, y = (int(v) for v in re.search(r"/(\d+)/(\d+)/(\d+)[^/]*$", tile_url).groups())
    tile = httpx.get(xyz.format(z=z, x=x, y=y))
    assert tile.status_code == 200 and tile.headers["content-type"] == "image/png"
    assert png_pixels(tile.content).shape[1:] == (256, 256)

    # Another preset, and the opacity slider drives the raster layer.
    w.page.select_option("#preset", "ndvi")
    wait_idle(w)
    assert any("/presets/ndvi/tiles/" in u and s == 200 for u, s in tiles)
    w.page.fill("#opacity", "0.4")
    opacity = w.page.evaluate("window.csdrPortal.map.getPaintProperty('scene', 'raster-opacity')")
    assert opacity == pytest.approx(0.4)

    # A key typed in stays out of the URL; the URL alone restores the page elsewhere.
    w.page.click("#key-button")
    w.page.fill("#key-input", seeded["partner_key"])
    w.page.click("#key-save")
    settle(w)
    shared = w.page.url
    assert seeded["partner_key"] not in shared and "api_key" not in shared
    view = w.page.evaluate(
        "() => { const m = window.csdrPortal.map; const c = m.getCenter();"
        " return [m.getZoom(), c.lng, c.lat]; }"
    )
    fresh = watch(browser.new_context(viewport={"width": 1280, "height": 800}))
    fresh.page.goto(shared)
    settle(fresh)
    wait_idle(fresh)
    assert fresh.page.get_attribute(f'#results li[data-key="{key}"]', "aria-selected") == "true"
    assert fresh.page.input_value("#preset") == "ndvi"
    assert fresh.page.input_value("#opacity") == "0.4"
    assert fresh.page.is_checked(f"#collection-{DEMO}")
    assert fresh.page.input_value("#from") == "2024-05-01"
    assert fresh.page.input_value("#to") == "2024-05-31"
    assert fresh.page.input_value("#bbox-text") == "118.5,37.5,119.5,38.5"
    # The same search asked of the catalog, and the same scenes listed.
    searched = w.posts("/search")[-1]
    assert fresh.posts("/search")[-1] == searched
    assert searched["bbox"] == [118.5, 37.5, 119.5, 38.5]
    assert searched["datetime"] == "2024-05-01T00:00:00Z/2024-05-31T23:59:59Z"
    assert rows(fresh) == rows(w) == [key]
    restored = fresh.page.evaluate(
        "() => { const m = window.csdrPortal.map; const c = m.getCenter();"
        " return [m.getZoom(), c.lng, c.lat]; }"
    )
    assert np.allclose(restored, view, atol=1e-2), (restored, view)
    assert not w.errors and not fresh.errors, (w.errors, fresh.errors)
    assert not w.blocked and not fresh.blocked
    context.close()
    fresh.context.close()


def test_subscription_equals_the_search_and_partner_key(browser, node, portal, push, seeded):
    key = seeded["partner_key"]
    w = watch(browser.new_context(viewport={"width": 1280, "height": 800}))
    responses: list[tuple[str, int]] = []
    w.page.on("response", lambda r: responses.append((r.url, r.status)))

    # Anonymous: no partners-only collection, nothing refused.
    w.page.goto(portal)
    settle(w)
    assert w.page.locator(f"#collection-{PARTNERS_ONLY}").count() == 0
    assert w.page.locator(f"#collection-{SENSOR}").count() == 1
    assert not [u for u, s in responses if s == 401]

    # A refused key: reported once, not retried.
    w.page.click("#key-button")
    w.page.fill("#key-input", "csdr_nope_" + "x" * 32)
    w.page.click("#key-save")
    settle(w)
    assert w.page.get_attribute("#status", "data-error") == "401"
    refused = len([u for u, s in responses if s == 401])
    w.page.wait_for_timeout(1500)
    assert 0 < refused == len([u for u, s in responses if s == 401]), "no loop on 401"

    # The partner's key: the collection appears.
    w.page.click("#key-button")
    w.page.fill("#key-input", key)
    w.page.click("#key-save")
    settle(w)
    assert w.page.locator(f"#collection-{PARTNERS_ONLY}").count() == 1

    # "Notify me" turns the search into a subscription with the same collections, area, filter.
    w.page.check(f"#collection-{SENSOR}")
    settle(w)
    w.page.fill("#bbox-text", "100,25,115,40")
    w.page.press("#bbox-text", "Enter")
    settle(w)
    w.page.fill("#cloud", "20")
    settle(w)
    search = w.posts("/search")[-1]
    w.page.fill("#webhook", "http://127.0.0.1:9/hooks/csdr")
    w.page.click("#notify")
    w.page.wait_for_selector("#subscriptions li")
    assert "whsec_" in w.page.inner_text("#secret")
    url, headers = push
    [sub] = httpx.get(f"{url}/subscriptions", headers={"X-API-Key": key}).json()["subscriptions"]
    assert sub["collections"] == search["collections"] == [SENSOR]
    assert sub["bbox"] == search["bbox"] == [100, 25, 115, 40]
    assert sub["filter"] == search["filter"]

    # Pause, resume and a test event from the list.
    row = f'#subscriptions li[data-id="{sub["id"]}"]'
    w.page.click(f"{row} button.toggle")
    w.page.wait_for_selector(f'{row}[data-status="paused"]')
    got = httpx.get(f"{url}/subscriptions/{sub['id']}", headers={"X-API-Key": key}).json()
    assert got["status"] == "paused"
    w.page.click(f"{row} button.toggle")
    w.page.wait_for_selector(f'{row}[data-status="active"]')
    w.page.click(f"{row} button.test")
    settle(w)
    sent = httpx.get(f"{url}/subscriptions/{sub['id']}/deliveries", headers={"X-API-Key": key})
    assert [d["type"] for d in sent.json()["deliveries"]] == ["org.csdr.test"]
    # The one refused-key report above is the only console error (Chromium logs each 401).
    assert all("401" in e for e in w.errors), w.errors
    assert not w.blocked
    w.context.close()


def test_chinese_labels_and_a_phone(browser, portal):
    zh = json.loads(MESSAGES_ZH.read_text(encoding="utf-8"))
    fonts = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True)
    assert fonts.stdout.strip(), "a CJK font (make test installs fonts-wqy-zenhei)"
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True
    )
    w = watch(context)
    # The demo collection: its scene has real tiles to show once selected.
    w.page.goto(f"{portal}/?lang=zh&c={DEMO}")
    settle(w)
    assert w.page.evaluate("document.documentElement.lang") == "zh"
    assert w.page.inner_text("#view-map") == zh["view.map"]
    assert w.page.inner_text("#sensors legend") == zh["search.sensors"]
    assert w.page.inner_text("#total").startswith("共")
    # Drawn with real glyphs in the label's own font: each character's pixels differ from the
    # missing-glyph box (tofu) that a codepoint no font has is drawn with.
    tofu = w.page.evaluate(
        r"""text => { const font = getComputedStyle(document.getElementById('view-map')).font;
             const draw = ch => { const c = document.createElement('canvas');
               c.width = c.height = 64; const g = c.getContext('2d');
               g.font = font.replace(/\d+(\.\d+)?px/, '40px'); g.fillText(ch, 8, 48);
               return Array.from(g.getImageData(0, 0, 64, 64).data).join(); };
             const box = draw('\u{10FFFD}');
             return [draw('\u{10FFFC}') === box,
                     [...text].filter(ch => ch.trim() && draw(ch) === box)]; }""",
        zh["view.map"] + zh["search.sensors"],
    )
    assert tofu[0], "two codepoints no font has are drawn alike: the comparison can tell"
    assert tofu[1] == [], f"drawn as missing glyphs: {tofu[1]}"
    assert w.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    keys = rows(w)

    # The map tab, then a tap on a footprint selects its scene.
    w.page.tap("#view-map")
    wait_idle(w)
    assert w.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    target = w.page.evaluate(
        """() => { const m = window.csdrPortal.map;
             const f = m.queryRenderedFeatures({layers: ['footprints-fill']})[0];
             const c = f.geometry.coordinates[0];
             const lng = (c[0][0] + c[2][0]) / 2, lat = (c[0][1] + c[2][1]) / 2;
             const p = m.project([lng, lat]); return [f.properties.key, p.x, p.y]; }"""
    )
    box = w.page.locator("#map canvas").bounding_box()
    w.page.touchscreen.tap(box["x"] + target[1], box["y"] + target[2])
    w.page.wait_for_function(
        "k => new URLSearchParams(location.search).get('sel') === k", arg=target[0]
    )
    assert target[0] in keys
    assert w.page.get_attribute(f'#results li[data-key="{target[0]}"]', "aria-selected") == "true"
    assert not w.errors and not w.blocked, (w.errors, w.blocked)
    context.close()


def test_keyboard_and_no_key_ever_in_the_url(browser, portal, seeded):
    """Arrow keys and Enter pick a scene; the key goes to sessionStorage and nowhere else."""
    w = watch(browser.new_context())
    w.page.goto(f"{portal}/?c={SENSOR}")
    settle(w)
    w.page.focus("#results")
    w.page.keyboard.press("ArrowDown")
    w.page.keyboard.press("ArrowDown")
    w.page.keyboard.press("Enter")
    second = rows(w)[1]
    w.page.wait_for_function(
        "k => new URLSearchParams(location.search).get('sel') === k", arg=second
    )
    assert w.page.get_attribute(f'#results li[data-key="{second}"]', "aria-selected") == "true"
    w.page.click("#key-button")
    w.page.fill("#key-input", seeded["partner_key"])
    w.page.click("#key-save")
    settle(w)
    key = seeded["partner_key"]
    assert w.page.evaluate("sessionStorage.getItem('csdr.portal.key')") == key
    for text in (key, base64.b64encode(key.encode()).decode()):
        assert text not in w.page.url
    for r in w.requests:
        assert key not in r.url, r.url
    w.context.close()


def test_swipe_between_two_scenes(browser, portal):
    first, second = (f"{DEMO}/{scene.name}" for scene in DEMO_SCENES[:2])
    w = watch(browser.new_context(viewport={"width": 1280, "height": 800}))
    tiles: list[tuple[str, int]] = []
    w.page.on("response", lambda r: "/tiles/" in r.url and tiles.append((r.url, r.status)))
    w.page.goto(f"{portal}/?c={DEMO}&sel={first}")
    settle(w)
    w.page.click("#pin-scene")
    settle(w)
    w.page.click(f'#results li[data-key="{second}"]')
    settle(w)
    wait_idle(w)
    # One zoom step on the main map: the pinned map follows, and each draws its own scene.
    tiles.clear()
    w.page.evaluate(
        """() => new Promise(r => { const m = window.csdrPortal.map;
             const p = window.csdrPortal.pinnedMap(); let left = 2;
             const done = () => { if (--left === 0) r(); };
             m.once('idle', done); p.once('idle', done); m.zoomIn({duration: 0}); })"""
    )
    pinned_source = w.page.evaluate("window.csdrPortal.pinnedMap().getSource('pinned').url")
    assert f"/items/{first.split('/', 1)[1]}/" in pinned_source
    zooms = w.page.evaluate(
        "[window.csdrPortal.map.getZoom(), window.csdrPortal.pinnedMap().getZoom()]"
    )
    assert zooms[0] == pytest.approx(zooms[1])
    for key in (first, second):
        item_id = key.split("/", 1)[1]
        drawn = [s for u, s in tiles if f"/items/{item_id}/presets/true-color/tiles/" in u]
        assert drawn and all(s == 200 for s in drawn), (key, tiles)
    w.page.fill("#swipe", "0.3")
    assert "70" in w.page.get_attribute("#map .compare", "style")
    query = parse_qs(urlsplit(w.page.url).query)
    assert query["pin"] == [first] and query["sel"] == [second] and query["swipe"] == ["0.3"]
    w.page.click("#unpin-scene")
    assert w.page.locator("#map .compare").is_hidden()
    assert "pin" not in parse_qs(urlsplit(w.page.url).query)
    assert not w.errors and not w.blocked, (w.errors, w.blocked)
    w.context.close()


@contextmanager
def offline_over(node, pg_cluster, scene: str) -> Iterator[str]:
    """A newer offline copy of demo scene `scene` over it (archived: its thumbnail, no COG),
    for a while."""
    item = httpx.get(f"{node.catalog}/collections/{DEMO}/items/{scene}").json()
    properties = {
        k: v for k, v in item["properties"].items() if k not in ("start_datetime", "end_datetime")
    }
    properties.update({"datetime": "2030-01-01T00:00:00Z", "order:status": "orderable"})
    kept = {k: v for k, v in item["assets"].items() if k != "data"}
    offline = dict(item, id=f"{scene}_OFFLINE", links=[], assets=kept, properties=properties)
    options = "options='-c search_path=pgstac,public'"  # pgSTAC's functions need it
    conninfo = f"{pg_cluster.conninfo(node.env['PGDATABASE'])} {options}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT create_item(%s)", (Jsonb(offline),))
    try:
        yield offline["id"]
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("SELECT delete_item(%s, %s)", (offline["id"], DEMO))


def test_many_results_show_the_mosaic_not_footprints(browser, node, portal, pg_cluster):
    """Above the portal's threshold (300 matches) the map draws the tiler's mosaic of the search
    for each collection it can render, and no footprint; narrowed below it, footprints return.
    The mosaic draws online scenes only: the newest demo scene, offline, lies over the online
    ones, whose pixels show."""
    with offline_over(node, pg_cluster, DEMO_SCENES[0].name):
        many_results_show_the_mosaic(browser, portal)


def many_results_show_the_mosaic(browser, portal) -> None:
    w = watch(browser.new_context(viewport={"width": 1280, "height": 800}))
    tiles: list[tuple[str, int]] = []
    w.page.on(
        "response",
        lambda r: "/searches/" in r.url and "/tiles/" in r.url and tiles.append((r.url, r.status)),
    )
    w.page.goto(portal)
    settle(w)
    wait_idle(w)
    threshold = httpx.get(f"{portal}/config.json").json()["mosaic_above"]
    assert int(w.page.get_attribute("#total", "data-count")) > threshold == 300
    mosaics = w.page.evaluate(
        """() => window.csdrPortal.map.getStyle().layers
             .filter(l => l.type === 'raster' && l.id.startsWith('mosaic-')).map(l => l.id)"""
    )
    # The demo collection's scenes have bands to render; the synthetic ones have none.
    assert mosaics == [f"mosaic-{DEMO}"]
    assert len(rows(w)) == 10 and rendered_footprints(w) == set(), "no footprint at low zoom"
    [registered] = w.posts("/searches/register")
    assert registered["collections"] == [DEMO]
    assert registered["sortby"] == [{"field": "datetime", "direction": "desc"}]
    assert "filter" not in registered, "the search as it is: the tiler keeps to online scenes"
    assert tiles and all(s in (200, 204) for _, s in tiles), tiles  # 204: nothing there yet
    source = w.page.evaluate(f"window.csdrPortal.map.getSource('mosaic-{DEMO}').url")
    search_id = re.search(r"/searches/([^/]+)/presets/true-color/", source).group(1)

    # Over the demo scenes (zoom 8.6: the tiler's tiles of zoom 9, read from the scenes): the
    # mosaic's tiles are imagery, and still no footprint is drawn.
    tiles.clear()
    w.page.evaluate(
        """() => new Promise(r => { const m = window.csdrPortal.map;
             m.once('idle', r); m.jumpTo({center: [118.92, 37.78], zoom: 8.6}); })"""
    )
    drawn = [u for u, s in tiles if s == 200 and f"/searches/{search_id}/" in u]
    assert drawn, tiles
    pixels = png_pixels(httpx.get(drawn[0]).content)
    assert pixels[-1].max() == 255, "the tile holds imagery"
    assert rendered_footprints(w) == set()

    # One sensor (100 scenes): below the threshold, the page's footprints and no mosaic.
    w.page.check(f"#collection-{SENSOR}")
    settle(w)
    wait_idle(w)
    assert w.page.get_attribute("body", "data-mosaic") == "0"
    assert not w.page.evaluate(
        "window.csdrPortal.map.getStyle().layers.some(l => l.id.startsWith('mosaic-'))"
    )
    assert rendered_footprints(w) == set(rows(w))
    assert not w.errors and not w.blocked, (w.errors, w.blocked)
    w.context.close()


@pytest.fixture(scope="module")
def ordering_portal(node, push, pg_cluster, tmp_path_factory) -> Iterator[dict[str, str]]:
    """The orders service, an offline look-alike CRESDA scene, and a portal that knows both."""
    package = write_lookalike(CRESDA_WFV, tmp_path_factory.mktemp("archive"), max_size=400)
    queued = httpx.post(
        f"{node.ingest}/jobs",
        json={"source": str(package), "offline": True},
        headers=node.ingest_headers,
    )
    assert queued.status_code == 202, queued.text
    job_url = f"{node.ingest}/jobs/{queued.json()['id']}"
    deadline = time.monotonic() + 120
    while (job := httpx.get(job_url, headers=node.ingest_headers).json())["status"] not in (
        "succeeded",
        "failed",
    ):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job["status"] == "succeeded", job
    port = free_port()
    env = {
        **node.env,
        "CSDR_ORDERS_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "CSDR_ORDERS_CATALOG_URL": node.catalog,
        "CSDR_ORDERS_ASSET_ROOTS": str(node.assets_dir),
        "CSDR_ORDERS_WORKER": "false",
    }
    logs = tmp_path_factory.mktemp("orders")
    with service("csdr_orders.app:create_app", port, env, logs) as orders:
        portal_env = {
            "CSDR_PORTAL_CATALOG_URL": node.catalog,
            "CSDR_PORTAL_TILER_URL": node.tiler,
            "CSDR_PORTAL_PUSH_URL": push[0],
            "CSDR_PORTAL_ORDERS_URL": orders,
        }
        with service("csdr_portal.app:create_app", free_port(), portal_env, logs) as portal:
            yield {"orders": orders, "portal": portal}


def test_offline_scene_ordered_from_the_basket(browser, node, ordering_portal, seeded):
    key = seeded["partner_key"]
    orders, portal = ordering_portal["orders"], ordering_portal["portal"]
    w = watch(browser.new_context(viewport={"width": 1280, "height": 800}))
    w.page.goto(f"{portal}/?c={OFFLINE_COLLECTION}&sel={OFFLINE_COLLECTION}/{OFFLINE_ID}")
    settle(w)
    assert w.page.locator("#orders").is_hidden(), "no key: no basket"
    w.page.click("#key-button")
    w.page.fill("#key-input", key)
    w.page.click("#key-save")
    settle(w)
    row = f'#results li[data-key="{OFFLINE_COLLECTION}/{OFFLINE_ID}"]'
    assert w.page.inner_text(f"{row} .badge") == "offline"
    # The queryables offer order:status: online/offline filters the search.
    w.page.select_option("#availability", "offline")
    settle(w)
    sent = w.posts("/search")[-1]
    assert sent["filter"] == OFFLINE_FILTER
    expected = catalog_search(node, {k: v for k, v in sent.items() if k != "token"})
    assert int(w.page.get_attribute("#total", "data-count")) == expected["numberMatched"] > 0
    assert rows(w) == [f"{f['collection']}/{f['id']}" for f in expected["features"]]
    w.page.select_option("#availability", "online")
    settle(w)
    online = catalog_search(node, {k: v for k, v in w.posts("/search")[-1].items() if k != "token"})
    assert f"{OFFLINE_COLLECTION}/{OFFLINE_ID}" not in rows(w)
    assert int(w.page.get_attribute("#total", "data-count")) == online["numberMatched"]
    w.page.goto(f"{portal}/?c={OFFLINE_COLLECTION}&sel={OFFLINE_COLLECTION}/{OFFLINE_ID}")
    settle(w)
    before = int(w.page.get_attribute('#quota p[data-class="all"]', "data-remaining"))
    api = httpx.get(f"{orders}/quota", headers={"X-API-Key": key}).json()
    assert before == api["quotas"][0]["remaining"]

    w.page.click("#add-basket")
    settle(w)
    assert w.page.locator("#basket li").count() == 1
    w.page.click("#place-order")
    settle(w)
    [listed] = httpx.get(f"{orders}/orders", headers={"X-API-Key": key}).json()["orders"]
    placed = httpx.get(f"{orders}/orders/{listed['id']}", headers={"X-API-Key": key}).json()
    assert [(i["collection"], i["id"]) for i in placed["items"]] == [
        (OFFLINE_COLLECTION, OFFLINE_ID)
    ]
    assert w.page.locator(f'#my-orders li[data-id="{placed["id"]}"]').count() == 1
    after = int(w.page.get_attribute('#quota p[data-class="all"]', "data-remaining"))
    assert after == before - 1
    assert w.page.locator("#basket li").count() == 0
    assert not w.errors and not w.blocked, (w.errors, w.blocked)
    w.context.close()


@contextmanager
def made_offline(node, pg_cluster, scene: str, status: str) -> Iterator[None]:
    """Demo scene `scene` with `order:status` `status` and its package registered (as an
    archived scene being produced again would be), for a while."""
    options = "options='-c search_path=pgstac,public'"  # pgSTAC's functions need it
    conninfo = f"{pg_cluster.conninfo(node.env['PGDATABASE'])} {options}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        # As stored: the API's item names its assets by download links, not where they are.
        [item] = conn.execute("SELECT get_item(%s, %s)", (scene, DEMO)).fetchone()
        changed = dict(item, properties={**item["properties"], "order:status": status})
        conn.execute("SELECT update_item(%s)", (Jsonb(changed),))
        conn.execute(
            "INSERT INTO csdr.offline_packages (collection, item_id, source) VALUES (%s, %s, %s)",
            (DEMO, scene, f"/archive/{scene}.tar.gz"),
        )
    try:
        yield
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("SELECT update_item(%s)", (Jsonb(item),))
            conn.execute(
                "DELETE FROM csdr.offline_packages WHERE collection = %s AND item_id = %s",
                (DEMO, scene),
            )


def test_one_rule_for_online_and_offline(browser, node, ordering_portal, seeded, pg_cluster):
    """A scene made offline is offline everywhere at once: gone from the tiler's collection
    mosaic, ordered for production by the orders service, badged offline and found by the
    offline filter in the portal. The page's own rule (js/availability.js) answers as
    csdr_storage.availability for every status."""
    key = seeded["partner_key"]
    orders, portal = ordering_portal["orders"], ordering_portal["portal"]
    scene = DEMO_SCENES[1].name
    item = httpx.get(f"{node.catalog}/collections/{DEMO}/items/{scene}").json()
    west, south, east, north = item["bbox"]
    tile = morecantile.tms.get("WebMercatorQuad").tile((west + east) / 2, (south + north) / 2, 12)
    listed = (
        f"{node.tiler}/collections/{DEMO}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}/assets"
    )

    def mosaic_scenes() -> set[str]:
        r = httpx.get(listed)
        assert r.status_code == 200, r.text
        return {s["id"] for s in r.json()}

    def dry_run() -> dict:
        wanted = {"items": [{"collection": DEMO, "id": scene}]}
        r = httpx.post(f"{orders}/orders?dry_run=true", json=wanted, headers={"X-API-Key": key})
        assert r.status_code == 200, r.text
        [answer] = r.json()["items"]
        return answer

    assert scene in mosaic_scenes() and dry_run()["online"] is True
    w = watch(browser.new_context(viewport={"width": 1280, "height": 800}))
    statuses = [None, "orderable", "ordered", "pending", "succeeded", "canceled", "unheard-of"]
    w.page.goto(portal)
    settle(w)
    page_rule = w.page.evaluate(
        """async (statuses) => { const m = await import('./js/availability.js');
             return {online: statuses.map(s => m.isOnline({properties: s === null ? {} :
                       {'order:status': s}})), filters: m.AVAILABILITY}; }""",
        statuses,
    )
    assert page_rule["online"] == [
        is_online({} if s is None else {"order:status": s}) for s in statuses
    ]
    assert page_rule["filters"] == {"online": ONLINE_FILTER, "offline": OFFLINE_FILTER}

    with made_offline(node, pg_cluster, scene, "pending"):
        assert scene not in mosaic_scenes(), "the tiler's collection mosaic leaves it out"
        assert dry_run()["online"] is False, "the orders service produces it"
        w.page.goto(f"{portal}/?c={DEMO}")
        settle(w)
        row = f'#results li[data-key="{DEMO}/{scene}"]'
        assert w.page.inner_text(f"{row} .badge") == "offline"
        w.page.select_option("#availability", "offline")
        settle(w)
        assert f"{DEMO}/{scene}" in rows(w)
        w.page.select_option("#availability", "online")
        settle(w)
        assert f"{DEMO}/{scene}" not in rows(w) and rows(w)
    assert scene in mosaic_scenes() and dry_run()["online"] is True
    assert not w.errors and not w.blocked, (w.errors, w.blocked)
    w.context.close()


@pytest.fixture(scope="module")
def org_keys(node, pg_cluster, seeded) -> dict[str, str]:
    """A data manager's (admin) key; a second partner, Other; and Held, whose orders wait for an
    administrator's approval (so one can stay cancelable)."""
    with psycopg.connect(pg_cluster.conninfo(node.env["PGDATABASE"]), autocommit=True) as conn:
        add_org(conn, "Other", "KE", "partner", "test")
        add_org(conn, "Held", "BR", "partner", "test")
        set_approval(conn, "Held", "manual", "test")
        return {
            "admin": issue_key(conn, "E2E node", ["admin"], "test")[0],
            "other": issue_key(conn, "Other", ["read"], "test")[0],
            "held": issue_key(conn, "Held", ["read"], "test")[0],
        }


def use_key(w: Watched, key: str) -> None:
    w.page.click("#key-button")
    w.page.fill("#key-input", key)
    w.page.click("#key-save")
    settle(w)


def order(orders: str, key: str, *scenes: str) -> dict:
    """An order placed through the API (scenes as collection/id)."""
    items = [dict(zip(("collection", "id"), s.split("/", 1), strict=True)) for s in scenes]
    r = httpx.post(f"{orders}/orders", json={"items": items}, headers={"X-API-Key": key})
    assert r.status_code == 201, r.text
    return r.json()


def test_cancel_and_renew_in_my_orders(browser, ordering_portal, org_keys):
    orders, portal = ordering_portal["orders"], ordering_portal["portal"]
    held = {"X-API-Key": org_keys["held"]}
    first, second = (f"{DEMO}/{scene.name}" for scene in DEMO_SCENES[:2])
    delivered = order(orders, org_keys["held"], first)
    approved = httpx.post(
        f"{orders}/orders/{delivered['id']}/approve", headers={"X-API-Key": org_keys["admin"]}
    )
    assert approved.json()["status"] == "succeeded", approved.text
    waiting = order(orders, org_keys["held"], second)
    assert waiting["status"] == "ordered" and waiting["awaiting_approval"]  # held for approval

    w = watch(browser.new_context(viewport={"width": 1280, "height": 800}))
    w.page.goto(portal)
    settle(w)
    use_key(w, org_keys["held"])
    row = '#my-orders li[data-id="{}"]'.format
    assert w.page.get_attribute(row(waiting["id"]), "data-status") == "ordered"
    assert w.page.get_attribute(row(delivered["id"]), "data-status") == "succeeded"
    # Only what the lifecycle allows: a held order cancels, a delivered one renews.
    assert w.page.locator(f"{row(waiting['id'])} button.cancel").count() == 1
    assert w.page.locator(f"{row(waiting['id'])} button.renew").count() == 0
    assert w.page.locator(f"{row(delivered['id'])} button.cancel").count() == 0
    before = int(w.page.get_attribute('#quota p[data-class="all"]', "data-remaining"))

    w.page.click(f"{row(waiting['id'])} button.cancel")
    settle(w)
    canceled = httpx.get(f"{orders}/orders/{waiting['id']}", headers=held).json()
    assert canceled["status"] == "canceled"
    assert w.page.get_attribute(row(waiting["id"]), "data-status") == "canceled"
    assert w.page.locator(f"{row(waiting['id'])} button.cancel").count() == 0
    after = int(w.page.get_attribute('#quota p[data-class="all"]', "data-remaining"))
    assert (
        after
        == before + 1
        == httpx.get(f"{orders}/quota", headers=held).json()["quotas"][0]["remaining"]
    ), "the canceled scene is refunded"
    w.page.click(f"{row(waiting['id'])} button.toggle-details")
    settle(w)
    shown = w.page.eval_on_selector_all(
        f"{row(waiting['id'])} .history li", "els => els.map(e => e.dataset.status)"
    )
    assert shown == [h["status"] for h in canceled["history"]] and shown[-1] == "canceled"

    # Renewing the delivered order's links: a new expiry in its history and on the page, and
    # the signed links shown (no key in them) download without a key.
    expired_before = delivered["expires"]
    w.page.click(f"{row(delivered['id'])} button.renew")
    settle(w)
    renewed = httpx.get(f"{orders}/orders/{delivered['id']}", headers=held).json()
    assert renewed["expires"] >= expired_before
    assert renewed["history"][-1]["reason_code"] == "renewed"
    reasons = w.page.eval_on_selector_all(
        f"{row(delivered['id'])} .history li", "els => els.map(e => e.dataset.reason)"
    )
    assert reasons[-1] == "renewed"
    expires = f"{row(delivered['id'])} .expires"
    assert w.page.get_attribute(expires, "data-expires") == renewed["expires"]
    items = httpx.get(f"{orders}/orders/{delivered['id']}/items", headers=held).json()
    links = w.page.eval_on_selector_all(
        f"{row(delivered['id'])} .delivered a", "els => els.map(e => e.href)"
    )
    assert links == [f["assets"]["data"]["href"] for f in items["features"]]
    assert org_keys["held"] not in links[0]
    got = httpx.get(links[0], headers={"Range": "bytes=0-3"})
    assert got.status_code in (200, 206) and got.content[:2] in (b"II", b"MM")
    assert not w.errors and not w.blocked, (w.errors, w.blocked)
    w.context.close()


def table_rows(w: Watched, name: str) -> list[str]:
    return w.page.eval_on_selector_all(
        f'#org-body table[data-table="{name}"] tbody tr[data-row]',
        "els => els.map(e => e.dataset.row)",
    )


def column(w: Watched, name: str, index: int) -> list[str]:
    return w.page.eval_on_selector_all(
        f'#org-body table[data-table="{name}"] tbody tr[data-row]',
        f"els => els.map(e => e.cells[{index}].textContent)",
    )


def open_page(w: Watched, page: str) -> None:
    w.page.click(f"#org-tab-{page}")
    settle(w)
    w.page.wait_for_selector(f'#org-body[data-page="{page}"]', state="attached")


def test_organisation_pages_show_a_partner_its_own_rows(
    browser, node, ordering_portal, push, seeded, org_keys
):
    orders, portal = ordering_portal["orders"], ordering_portal["portal"]
    partner, other = seeded["partner_key"], org_keys["other"]
    first, second = (f"{DEMO}/{scene.name}" for scene in DEMO_SCENES[:2])
    mine = order(orders, partner, second)
    theirs = order(orders, other, first, second)
    hook = {"url": "http://127.0.0.1:9/hooks/org", "secret": "whsec_" + "s" * 32}
    subs = {}
    for who, key in (("partner", partner), ("other", other)):
        r = httpx.post(
            f"{push[0]}/subscriptions",
            json={"collections": [DEMO], "webhook": hook},
            headers={"X-API-Key": key},
        )
        assert r.status_code == 201, r.text
        subs[who] = r.json()["id"]

    def api(url: str, key: str, **params) -> httpx.Response:
        r = httpx.get(url, headers={"X-API-Key": key}, params=params)
        assert r.status_code == 200, r.text
        return r

    w = watch(browser.new_context(viewport={"width": 1280, "height": 800}))
    w.page.goto(portal)
    settle(w)
    assert w.page.locator("#org-button").is_hidden(), "no key: no organisation pages"
    use_key(w, partner)
    w.page.click("#org-button")
    settle(w)
    assert w.page.locator("#map").is_hidden() and "org=keys" in w.page.url
    assert w.page.inner_text("#org-title").startswith("Partner")
    keys = api(f"{node.catalog}/account/keys", partner).json()
    assert table_rows(w, "keys") == [k["prefix"] for k in keys]
    assert set(column(w, "keys", 1)) == {"Partner"}

    open_page(w, "orders")
    listed = api(f"{orders}/orders", partner, limit=1000).json()["orders"]
    assert table_rows(w, "orders") == [o["id"] for o in listed]
    assert mine["id"] in table_rows(w, "orders") and theirs["id"] not in table_rows(w, "orders")
    assert set(column(w, "orders", 1)) == {"Partner"}

    open_page(w, "subscriptions")
    assert subs["partner"] in table_rows(w, "subscriptions")
    assert subs["other"] not in table_rows(w, "subscriptions")

    open_page(w, "usage")
    report = api(f"{orders}/stats/usage", partner, group_by="organisation,collection").json()
    assert set(column(w, "usage", 0)) == {"Partner"}
    assert len(table_rows(w, "usage")) == len(report["rows"]) > 0
    totals = w.page.eval_on_selector_all(
        '#org-body table[data-table="usage"] tfoot td', "els => els.map(e => e.textContent)"
    )
    measures = ("source", "ordered", "released", "downloaded")
    assert totals[2:] == [str(report["totals"][m]) for m in measures]
    with w.page.expect_download() as got:
        w.page.click("#usage-csv")
    csv = Path(got.value.path()).read_text()
    expected = api(
        f"{orders}/stats/usage", partner, group_by="organisation,collection", format="csv"
    )
    assert csv == expected.text and "Other" not in csv
    # Grouping by month: the choice reaches the report and the URL.
    w.page.select_option("#usage-period", "month")
    settle(w)
    assert "ugroup=organisation%2Ccollection%2Cmonth" in w.page.url
    assert len(column(w, "usage", 2)[0]) == 7  # YYYY-MM
    assert partner not in w.page.url
    assert not w.errors and not w.blocked, (w.errors, w.blocked)
    w.context.close()

    # A data manager: every organisation, every key, the collections' policies, every order.
    w = watch(browser.new_context(viewport={"width": 1280, "height": 800}))
    w.page.goto(f"{portal}/?org=organisations")
    settle(w)
    use_key(w, org_keys["admin"])
    w.page.wait_for_selector('#org-body[data-page="organisations"]', state="attached")
    orgs = api(f"{node.catalog}/admin/organisations", org_keys["admin"]).json()
    assert table_rows(w, "organisations") == [o["name"] for o in orgs]
    assert {"Partner", "Other", "Held"} <= set(table_rows(w, "organisations"))
    open_page(w, "keys")
    assert {"Partner", "Other", "E2E node"} <= set(column(w, "keys", 1))
    open_page(w, "policies")
    policy = w.page.locator(f'#org-body tr[data-row="{PARTNERS_ONLY}"]')
    assert policy.locator("td").nth(1).inner_text() == "listed partners"
    assert policy.locator("td").nth(2).inner_text() == "Partner"
    open_page(w, "orders")
    assert {mine["id"], theirs["id"]} <= set(table_rows(w, "orders"))
    # In Chinese, on a phone: the pages' texts come from zh.json, nothing scrolls sideways.
    zh = json.loads(MESSAGES_ZH.read_text(encoding="utf-8"))
    w.page.set_viewport_size({"width": 390, "height": 844})
    w.page.select_option("#lang", "zh")
    settle(w)
    assert w.page.inner_text("#org-tab-orders") == zh["org.page.orders"]
    assert w.page.inner_text("#org-body th >> nth=2") == zh["org.col.status"]
    assert w.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert not w.errors and not w.blocked, (w.errors, w.blocked)
    w.context.close()
