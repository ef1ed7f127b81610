"""What the access check costs: the same searches and tiles on a public collection without a key
and on a partners-only copy of it with a partner's key, in one run, against the same catalog and
tiler processes. Goal (issue 6): the keyed, restricted requests within 5% of the public ones at
p50. Prints ratios; asserts only that both sides answer the same content."""

import time
from pathlib import Path

import httpx
import morecantile
import numpy as np
import psycopg
import pytest

from conftest import free_port
from csdr_access.admin import add_org, issue_key, set_policy
from csdr_ingest.pipeline import ingest_file
from csdr_ingest.settings import Settings
from csdr_ingest.synthetic import write_demo_scenes
from tests.e2e.processes import service

PUBLIC, RESTRICTED = "open", "partners-only"
ROUNDS = 150  # search requests per side (interleaved)
ZOOM = 14
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")


@pytest.fixture
def node(pg_env: dict[str, str], tmp_path: Path):
    settings = Settings(assets_dir=tmp_path / "assets")
    with psycopg.connect(autocommit=True) as conn:
        scenes = write_demo_scenes(tmp_path / "scenes")
        items = {
            c: [ingest_file(s, conn, settings, collection=c) for s in scenes]
            for c in (PUBLIC, RESTRICTED)
        }
        add_org(conn, "GISTDA", "TH", "partner", "bench")
        set_policy(conn, RESTRICTED, "partners", ["GISTDA"], "bench")
        key = issue_key(conn, "GISTDA", ["read"], "bench")[0]
    with (
        service("csdr_catalog.app:create_app", free_port(), pg_env, tmp_path) as catalog,
        service("csdr_tiler.app:create_app", free_port(), pg_env, tmp_path) as tiler,
    ):
        yield catalog, tiler, items, key


def p50_ms(samples: list[float]) -> float:
    return float(np.percentile(samples, 50)) * 1000


def timed(client: httpx.Client, url: str, **kwargs) -> tuple[float, httpx.Response]:
    start = time.perf_counter()
    r = client.get(url, **kwargs)
    return time.perf_counter() - start, r


def test_access_check_cost_on_searches_and_tiles(node):
    catalog, tiler, items, key = node
    keyed = {"X-API-Key": key}
    bbox = ",".join(str(v) for v in items[PUBLIC][0]["bbox"])
    results: dict[str, dict[str, list[float]]] = {"search": {}, "tile": {}}
    with httpx.Client(timeout=60) as client:
        for side in (PUBLIC, RESTRICTED):  # warm-up: caches, connections
            for _ in range(5):
                client.get(
                    f"{catalog}/search",
                    params={"collections": side, "bbox": bbox},
                    headers=keyed if side == RESTRICTED else {},
                )
        pub, res = [], []
        for _ in range(ROUNDS):  # interleaved, so drift affects both sides alike
            t, a = timed(client, f"{catalog}/search", params={"collections": PUBLIC, "bbox": bbox})
            pub.append(t)
            t, b = timed(
                client,
                f"{catalog}/search",
                headers=keyed,
                params={"collections": RESTRICTED, "bbox": bbox},
            )
            res.append(t)
        assert a.status_code == b.status_code == 200
        assert [f["id"] for f in a.json()["features"]] == [f["id"] for f in b.json()["features"]]
        results["search"] = {"public": pub, "keyed": res}

        pub, res = [], []
        tiles = [
            (item["id"], t)
            for item in items[PUBLIC]
            for t in WEB_MERCATOR.tiles(*item["bbox"], zooms=[ZOOM])
        ]
        for iid, t in tiles[:80]:  # distinct tiles, cold on both sides (different items)
            path = f"items/{iid}/presets/true-color/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png"
            took, a = timed(client, f"{tiler}/collections/{PUBLIC}/{path}")
            pub.append(took)
            took, b = timed(client, f"{tiler}/collections/{RESTRICTED}/{path}", headers=keyed)
            res.append(took)
            assert a.status_code == b.status_code and a.status_code in (200, 204, 404)
        results["tile"] = {"public": pub, "keyed": res}

    print()
    for what, sides in results.items():
        public, restricted = p50_ms(sides["public"]), p50_ms(sides["keyed"])
        print(
            f"access check, {what}: public anonymous p50 {public:.1f} ms, partners-only with a "
            f"key p50 {restricted:.1f} ms -> {restricted / public:.3f}x (goal <= 1.05x)"
        )
