"""Requests built to kill or starve a service, sent over real sockets to real processes: a CQL2
filter nested thousands deep (the native parser's stack overflows on it) to every route that takes
a filter, and images far beyond the size limits; each is a 400 naming the limit, and the services
keep serving with their memory unchanged."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import rasterio
from rasterio.io import MemoryFile

from conftest import free_port
from csdr_ingest.synthetic import DEMO_SCENES, write_scene
from tests.e2e.processes import service

pytestmark = pytest.mark.slow

COLLECTION = "e2e-hostile"
SCENE = DEMO_SCENES[0]
NESTED_TEXT = "(" * 3000 + "eo:cloud_cover<10" + ")" * 3000
NESTED_NOT = "NOT " * 5000 + "eo:cloud_cover<10"


def nested_json_body(levels: int) -> dict:
    """httpx arguments posting `{"filter": NOT(NOT(... eo:cloud_cover < 10))}`, `levels` deep."""
    expr = '{"op":"<","args":[{"property":"eo:cloud_cover"},10]}'
    nested = '{"op":"not","args":[' * levels + expr + "]}" * levels
    return {"content": '{"filter":' + nested + "}", "headers": {"content-type": "application/json"}}


def pid_on_port(port: int) -> int:
    """The uvicorn process serving `port` (started by tests.e2e.processes.service)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"uvicorn" in b" ".join(argv) and str(port).encode() in argv:
                return int(entry.name)
    raise LookupError(port)


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise LookupError(pid)


@pytest.fixture(scope="module")
def scene(node, tmp_path_factory) -> str:
    source = write_scene(SCENE, tmp_path_factory.mktemp("inbox"))
    job = node.run_job(source, COLLECTION)
    assert job["status"] == "succeeded", job
    return SCENE.name


def filter_requests(node, push, scene: str) -> list[tuple[str, str, dict]]:
    """(method, url, httpx arguments) of every route that takes a filter, with NESTED_TEXT."""
    text = {"filter": NESTED_TEXT, "filter-lang": "cql2-text"}
    tile = f"{node.tiler}/collections/{COLLECTION}/tiles/WebMercatorQuad/10/845/388.png"
    push_url, push_headers = push
    subscription = {
        "collections": [COLLECTION],
        "filter": NESTED_TEXT,
        "webhook": {"url": "http://127.0.0.1:9/hook", "secret": "whsec_" + "A" * 32},
    }
    return [
        ("GET", f"{node.catalog}/search", {"params": text}),
        ("GET", f"{node.catalog}/search", {"params": {**text, "filter": NESTED_NOT}}),
        ("POST", f"{node.catalog}/search", nested_json_body(3000)),
        ("POST", f"{node.catalog}/search", nested_json_body(40)),
        ("GET", f"{node.catalog}/collections/{COLLECTION}/items", {"params": text}),
        ("GET", f"{node.catalog}/collections", {"params": text}),
        ("GET", f"{node.catalog}/aggregate", {"params": {**text, "aggregations": "total_count"}}),
        ("GET", tile, {"params": {**text, "assets": "data"}}),
        ("POST", f"{node.tiler}/searches/register", nested_json_body(3000)),
        ("POST", f"{node.tiler}/searches/register", nested_json_body(40)),
        ("POST", f"{push_url}/subscriptions", {"json": subscription, "headers": push_headers}),
    ]


def test_a_filter_nested_thousands_deep_is_a_400_everywhere_and_nobody_dies(node, push, scene):
    for method, url, kwargs in filter_requests(node, push, scene):
        r = httpx.request(method, url, timeout=30, **kwargs)
        assert r.status_code == 400, (method, url, r.status_code, r.text[:300])
        # A body nested thousands deep is refused by the JSON parser already.
        assert "CSDR_CQL2_MAX_DEPTH" in r.text or "pars" in r.text, (url, r.text[:300])
    for base in (node.catalog, node.tiler, node.ingest, push[0]):
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200, base
    found = httpx.get(f"{node.catalog}/search", params={"filter": f"id = '{scene}'"})
    assert found.status_code == 200 and found.json()["features"], found.text[:300]


@pytest.fixture(scope="module")
def small_tiler(node, tmp_path_factory) -> Iterator[str]:
    """A second tiler over the node's database whose images may be at most 1024 pixels a side."""
    env = {**node.env, "CSDR_TILER_MAX_IMAGE_SIDE": "1024", "CSDR_TILER_PYRAMID_REFRESH_S": "0"}
    with service("csdr_tiler.app:create_app", free_port(), env, tmp_path_factory.mktemp("t")) as u:
        yield u


def test_huge_images_are_refused_fast_with_the_tilers_memory_unchanged(node, scene, small_tiler):
    item = f"{node.tiler}/collections/{COLLECTION}/items/{scene}"
    search = httpx.post(f"{node.tiler}/searches/register", json={"collections": [COLLECTION]})
    assert search.status_code == 200, search.text
    mosaic = f"{node.tiler}/searches/{search.json()['id']}"
    tiler = pid_on_port(int(node.tiler.rsplit(":", 1)[1]))
    before = resident_mb(tiler)
    huge = [
        f"{item}/bbox/118,37,120,39/20000x20000.tif?assets=data",
        f"{mosaic}/bbox/118,37,120,39/20000x20000.tif?assets=data",
        f"{item}/preview.png?assets=data&width=20000&height=20000",
        f"{item}/tiles/WebMercatorQuad/10/845/388.png?assets=data&tilesize=20000",
        f"{item}/tiles/WebMercatorQuad/10/845/388.png?assets=data&buffer=10000",
        f"{item}/bbox/118,37,120,39.tif?assets=data&max_size=1e9",
        f"{item}/bbox/118,37,120,39/4000x4000.tif?" + "&".join(["assets=data"] + ["bidx=1"] * 64),
    ]
    for url in huge:
        r = httpx.get(url, timeout=30)
        assert r.status_code == 400, (url, r.status_code, r.text[:300])
        assert "CSDR_TILER_MAX_IMAGE" in r.json()["detail"], r.text
    assert resident_mb(tiler) - before < 64
    assert httpx.get(f"{node.tiler}/healthz", timeout=5).status_code == 200


def test_a_crop_without_a_size_is_read_onto_the_largest_side(node, scene, small_tiler):
    # Unbounded, titiler reads the box at the scene's resolution: ~20,000 pixels a side here.
    item = httpx.get(f"{node.catalog}/collections/{COLLECTION}/items/{scene}").json()
    with rasterio.open(item["assets"]["data"]["href"]) as cog:
        native_side = 2 * 111_000 * math.cos(math.radians(39)) / cog.res[0]
    assert native_side > 10 * 1024
    r = httpx.get(
        f"{small_tiler}/collections/{COLLECTION}/items/{scene}/bbox/118,37,120,39.tif",
        params={"assets": "data"},
        timeout=60,
    )
    assert r.status_code == 200, r.text[:300]
    with MemoryFile(r.content) as mem, mem.open() as img:
        assert max(img.width, img.height) == 1024, (img.width, img.height)


def test_an_oversized_body_is_refused_before_it_is_read(node, push):
    big = b'{"filter": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    headers = {"content-type": "application/json"}
    for url in (
        f"{node.catalog}/search",
        f"{node.tiler}/searches/register",
        f"{node.ingest}/jobs",
        f"{push[0]}/subscriptions",
    ):
        r = httpx.post(url, content=big, headers=headers, timeout=30)
        assert r.status_code == 413, (url, r.status_code, r.text[:200])
