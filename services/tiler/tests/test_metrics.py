"""The tiler's metrics: tiles counted under their route template, a tile answered from the
response cache counted as answered before routing and as a hit (a 304 as revalidated, a render
as a miss), and the COGs kept open."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from csdr_tiler.app import create_app
from csdr_tiler.datasets import POOL
from csdr_tiler.settings import Settings
from services.tiler.tests.scenes import ingest

REPO_ROOT = Path(__file__).resolve().parents[3]

TEMPLATE = (
    "/collections/{collection_id}/items/{item_id}/presets/{preset}/tiles/{tileMatrixSetId}"
    "/{z}/{x}/{y}.{format}"
)


def samples(client: TestClient, family: str) -> list:
    text = client.get("/metrics").text
    return next(f.samples for f in text_string_to_metric_families(text) if f.name == family)


def measure(url: str) -> dict:
    """Render `url`, serve it from the response cache, revalidate it, and scrape the metrics
    before and after: in this interpreter, which is a fresh one (see below). No pyramid
    refresher: its renders would borrow the scene's COG while the metrics are read."""
    with TestClient(create_app(Settings(pyramid_refresh_s=0))) as client:
        before = [s.value for s in samples(client, "csdr_tiler_open_datasets")]
        rendered = client.get(url)
        assert rendered.status_code == 200  # rendered
        assert client.get(url).status_code == 200  # from the response cache
        etag = rendered.headers["etag"]
        assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
        outcomes = {s.labels["outcome"]: s.value for s in samples(client, "csdr_tiler_tile_cache")}
        requests = samples(client, "csdr_http_requests")
        cached = samples(client, "csdr_http_answered_before_routing")
        [open_datasets] = samples(client, "csdr_tiler_open_datasets")
    tiles = [s for s in requests if s.labels["route"] == TEMPLATE and s.name.endswith("_total")]
    hits = [s for s in cached if s.labels["route"] == TEMPLATE and s.name.endswith("_total")]
    return {
        "before": before,
        "tiles": sorted((s.labels["status"], s.value) for s in tiles),
        "hits": sorted((s.labels["status"], s.value) for s in hits),
        "outcomes": outcomes,
        "open_datasets": open_datasets.value,
        "idle": POOL.idle(),
    }


def test_a_cached_tile_and_the_open_cogs_show_in_the_metrics(pg_env, tmp_path):
    with psycopg.connect(autocommit=True) as conn:
        scene = ingest(conn, tmp_path, "gf2-metrics")
    tile = scene.centre_tile(13)
    url = f"{scene.url}/presets/true-color/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
    # The pool of open COGs is process-wide: in this test process other tests' apps and their
    # threads may still open and close COGs. A fresh interpreter sees only this app's.
    script = f"import json; from {__name__} import measure; print(json.dumps(measure({url!r})))"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["before"] == [0]
    assert seen["tiles"] == [["200", 2], ["304", 1]]
    assert seen["hits"] == [["200", 1], ["304", 1]]
    assert seen["outcomes"] == {"hit": 1, "revalidated": 1, "miss": 1}
    assert seen["open_datasets"] == seen["idle"] == 1  # the tile's COG, kept open


def test_the_gdal_block_cache_is_bounded_and_shown(pg_env, tmp_path):
    with psycopg.connect(autocommit=True) as conn:
        scene = ingest(conn, tmp_path, "gf2-blocks")
    tile = scene.centre_tile(14)
    url = f"{scene.url}/presets/true-color/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
    with TestClient(create_app(Settings(gdal_cache_mb=48))) as client:
        assert client.get(url).status_code == 200
        [bound] = samples(client, "csdr_tiler_gdal_block_cache_max_bytes")
        [used] = samples(client, "csdr_tiler_gdal_block_cache_bytes")
    assert bound.value == 48 * 2**20
    assert 0 < used.value <= bound.value  # the tile's blocks are in it
