"""Tiles behind a CDN: a shared cache that follows RFC 9111 (tests/support/cdn.py) in front of
a tiler. Public tiles are served from the cache, stale ones while it revalidates
(`stale-while-revalidate`, then a 304); tiles answered to a key, in a header or as `?api_key=`,
are never stored, so no caller gets another's."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import httpx
import psycopg
import pytest

from conftest import free_port
from csdr_access.admin import add_org, issue_key, set_policy
from csdr_ingest.synthetic import DEMO_SCENES, write_scene
from tests.e2e.processes import service
from tests.e2e.qgis import centre_tile
from tests.support.cdn import SharedCache, cdn

PUBLIC = "cdn-public"
PARTNERS = "cdn-partners"
PUBLIC_SCENE = replace(DEMO_SCENES[0], size=384, gsd=32.0, name="CDN_PUBLIC_SCENE")
PARTNER_SCENE = replace(DEMO_SCENES[1], size=384, gsd=32.0, name="CDN_PARTNER_SCENE")
MAX_AGE_S = 1


@pytest.fixture(scope="module")
def keys(node, pg_cluster, tmp_path_factory) -> tuple[str, str]:
    """The two scenes ingested; keys of two partner organisations that may both see the second."""
    inbox = tmp_path_factory.mktemp("inbox")
    for scene, collection in ((PUBLIC_SCENE, PUBLIC), (PARTNER_SCENE, PARTNERS)):
        job = node.run_job(write_scene(scene, inbox), collection)
        assert job["status"] == "succeeded", job
    with psycopg.connect(pg_cluster.conninfo(node.env["PGDATABASE"]), autocommit=True) as conn:
        add_org(conn, "CDN partner A", "TH", "partner", "test")
        add_org(conn, "CDN partner B", "LA", "partner", "test")
        set_policy(conn, PARTNERS, "partners", ["CDN partner A", "CDN partner B"], "test")
        a = issue_key(conn, "CDN partner A", ["read"], "test")[0]
        b = issue_key(conn, "CDN partner B", ["read"], "test")[0]
    return a, b


@pytest.fixture(scope="module")
def edge(node, keys, tmp_path_factory) -> Iterator[tuple[str, SharedCache]]:
    """A tiler whose tiles stay fresh for a second, behind the shared cache."""
    env = {
        **node.env,
        "CSDR_TILER_CACHE_MIN_MAX_AGE_S": str(MAX_AGE_S),
        "CSDR_TILER_CACHE_MAX_MAX_AGE_S": str(MAX_AGE_S),
        "CSDR_TILER_CACHE_STALE_WHILE_REVALIDATE_S": "60",
    }
    with (
        service("csdr_tiler.app:create_app", free_port(), env, tmp_path_factory.mktemp("t")) as url,
        cdn(url) as proxied,
    ):
        yield proxied


def tile_path(node, collection: str, item_id: str, key: str | None = None) -> str:
    headers = {"X-API-Key": key} if key else {}
    item = httpx.get(f"{node.catalog}/collections/{collection}/items/{item_id}", headers=headers)
    assert item.status_code == 200, item.text
    tile = centre_tile(item.json(), 12)
    return (
        f"/collections/{collection}/items/{item_id}/presets/true-color/tiles/WebMercatorQuad/"
        f"{tile.z}/{tile.x}/{tile.y}.png"
    )


def origin_hits(cache: SharedCache, target: str) -> list[int]:
    return [status for path, status in cache.origin_requests if path == target]


def test_public_tiles_are_served_from_the_cache_and_revalidated(node, edge):
    url, cache = edge
    target = tile_path(node, PUBLIC, PUBLIC_SCENE.name)
    first = httpx.get(url + target)
    assert first.status_code == 200 and first.headers["x-cache"] == "MISS"
    control = first.headers["cache-control"]
    assert control == f"public, max-age={MAX_AGE_S}, stale-while-revalidate=60"
    assert {"authorization", "x-api-key"} <= {
        v.strip().lower() for v in first.headers["vary"].split(",")
    }
    second = httpx.get(url + target)
    assert second.headers["x-cache"] == "HIT" and second.content == first.content
    assert origin_hits(cache, target) == [200]
    # Past max-age: served stale at once, revalidated in the background with the ETag.
    time.sleep(MAX_AGE_S + 0.2)
    stale = httpx.get(url + target)
    assert stale.headers["x-cache"] == "STALE" and stale.content == first.content
    deadline = time.monotonic() + 10
    while origin_hits(cache, target) != [200, 304]:
        assert time.monotonic() < deadline, cache.origin_requests
        time.sleep(0.05)
    assert httpx.get(url + target).headers["x-cache"] == "HIT"


def test_keyed_tiles_are_never_shared(node, edge, keys):
    url, cache = edge
    a, b = keys
    target = tile_path(node, PARTNERS, PARTNER_SCENE.name, a)
    deadline = time.monotonic() + 10  # the tiler's visibility lists live up to 2 s
    while httpx.get(url + target).status_code != 404:
        assert time.monotonic() < deadline, "the partners policy was not applied"
        time.sleep(0.2)
    for key in (a, a, b):
        r = httpx.get(url + target, headers={"X-API-Key": key})
        assert r.status_code == 200 and r.headers["x-cache"] == "MISS"
        assert r.headers["cache-control"].startswith("private")
    anonymous = httpx.get(url + target)
    assert anonymous.status_code == 404 and anonymous.headers["x-cache"] == "MISS"
    assert anonymous.headers["cache-control"] == "no-store"  # nor is a refusal kept
    # QGIS's form: the key in the URL. Whoever asks for that URL again reaches the tiler.
    keyed_url = f"{url}{target}?api_key={a}"
    for _ in range(2):
        r = httpx.get(keyed_url)
        assert r.status_code == 200 and r.headers["x-cache"] == "MISS"
        assert r.headers["cache-control"].startswith("private")
    assert not [t for t in cache.entries if t.startswith(target.split("?")[0])]
    # The public scene asked with a key is private too, and does not replace the public copy.
    public = tile_path(node, PUBLIC, PUBLIC_SCENE.name)
    httpx.get(url + public)
    with_key = httpx.get(url + public, headers={"X-API-Key": b})
    assert with_key.headers["cache-control"].startswith("private")
    assert httpx.get(url + public).headers["x-cache"] in ("HIT", "STALE")
