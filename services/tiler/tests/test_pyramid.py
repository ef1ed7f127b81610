"""The low-zoom pyramid of a collection mosaic: its pixels match a read of the scenes, a
re-ingest or a delete is seen by the next request (with a refresher: answered at once from the
stored tiles, saying so, for no longer than its interval), it never shows another collection's
scenes, nothing survives a TRUNCATE of the items or the collection's deletion, and mosaic tiles
carry ETags that change only where items changed. Also per-item Cache-Control.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import morecantile
import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient

from csdr_access.admin import set_policy
from csdr_ingest.synthetic import Scene
from csdr_tiler.app import create_app
from csdr_tiler.settings import Settings
from services.tiler.tests.pyramids import (
    SCENES_ONLY,
    A,
    B,
    assert_close,
    centre_lon_lat,
    module_database,
    wait_until_current,
)
from services.tiler.tests.scenes import WEB_MERCATOR, Ingested, decode, ingest

pytestmark = pytest.mark.slow  # seconds per test (scenes, apps): make test, not test-fast

COLLECTION = "pyr"
PRIVATE = "pyr-private"
# A third wide scene, far to the south of A and B.
FAR = Scene(
    "PYR_FAR",
    "EPSG:32650",
    300_000,
    3_000_000,
    datetime(2024, 7, 1, 3),
    seed=3,
    size=512,
    gsd=600.0,
)
LATER = datetime(2024, 8, 1, 3)
SORT = [{"field": "datetime", "direction": "desc"}, {"field": "eo:cloud_cover", "direction": "asc"}]


@dataclass
class World:
    client: TestClient
    scenes_client: TestClient  # no search layers: registered searches read their scenes
    dsn: str
    scenes: dict[str, Ingested]
    search: str
    tmp: Path


@pytest.fixture(scope="module")
def world(pg_cluster, tmp_path_factory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("pyramid")
    with module_database(pg_cluster, "t_pyramid") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            scenes = {
                s.name: ingest(conn, tmp / s.name, COLLECTION, s, s.name) for s in (A, B, FAR)
            }
            # A later scene over A in a private collection: on top, were it ever mixed in.
            ingest(conn, tmp / "private", PRIVATE, replace(A, seed=5, acquired=LATER), "PYR_P")
            set_policy(conn, PRIVATE, "private", [], "test")
        with (
            TestClient(create_app(Settings(pyramid_refresh_s=0))) as client,
            TestClient(create_app(SCENES_ONLY)) as scenes_client,
        ):
            search = client.post(
                "/searches/register", json={"collections": [COLLECTION], "sortby": SORT}
            ).json()["id"]
            yield World(client, scenes_client, dsn, scenes, search, tmp)


def centre(ingested: Ingested, z: int) -> morecantile.Tile:
    return ingested.centre_tile(z)


def pyramid_tile(world: World, tile: morecantile.Tile, **params: str):
    path = f"/collections/{COLLECTION}/presets/true-color/tiles/WebMercatorQuad"
    return world.client.get(f"{path}/{tile.z}/{tile.x}/{tile.y}.png", params=params)


def scenes_tile(world: World, tile: morecantile.Tile) -> np.ndarray:
    """The same mosaic read from the scenes (by a tiler without search layers)."""
    path = f"/searches/{world.search}/presets/true-color/tiles/WebMercatorQuad"
    r = world.scenes_client.get(f"{path}/{tile.z}/{tile.x}/{tile.y}.png")
    assert r.status_code == 200, r.text
    return decode(r.content)


def stored_levels(world: World) -> set[int]:
    with psycopg.connect(world.dsn) as conn:
        rows = conn.execute(
            "SELECT DISTINCT z FROM csdr.pyramid_tiles WHERE collection = %s", (COLLECTION,)
        )
        return {int(r[0]) for r in rows}


@pytest.mark.parametrize("z", [5, 6, 8])
def test_low_zoom_tiles_come_from_the_pyramid_with_the_scenes_pixels(world, z):
    tile = centre(world.scenes["PYR_B"], z)
    r = pyramid_tile(world, tile)
    assert r.status_code == 200, r.text
    assert z in stored_levels(world) and 8 in stored_levels(world)
    assert_close(decode(r.content), scenes_tile(world, tile))


def test_a_512_tile_and_an_expression_from_the_pyramid(world):
    tile = centre(world.scenes["PYR_B"], 5)
    big = pyramid_tile(world, tile, tilesize="512")
    assert big.status_code == 200 and decode(big.content).shape == (4, 512, 512)
    raw = f"/collections/{COLLECTION}/presets/ndvi/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}"
    ndvi = world.client.get(f"{raw}.png")
    assert ndvi.status_code == 200 and decode(ndvi.content)[3].any()


def test_a_reingest_and_a_delete_are_seen_by_the_next_request(world):
    tile = centre(world.scenes["PYR_B"], 6)
    before = pyramid_tile(world, tile)
    far = centre(world.scenes["PYR_FAR"], 10)
    far_before = pyramid_tile(world, far)
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        ingest(conn, world.tmp / "again", COLLECTION, replace(B, seed=9), "PYR_B")
    after = pyramid_tile(world, tile)
    assert after.headers["etag"] != before.headers["etag"]
    assert (decode(after.content)[:3] != decode(before.content)[:3]).any()
    assert_close(decode(after.content), scenes_tile(world, tile))
    # Far from the change, the tile (and its ETag) stays.
    assert pyramid_tile(world, far).headers["etag"] == far_before.headers["etag"]

    with psycopg.connect(world.dsn, autocommit=True) as conn:
        conn.execute("SET search_path TO pgstac, public")
        conn.execute("SELECT delete_item(%s, %s)", ("PYR_B", COLLECTION))
    gone = decode(pyramid_tile(world, tile).content)
    assert_close(gone, scenes_tile(world, tile))
    assert (gone[3] > 0).sum() < (decode(after.content)[3] > 0).sum(), "B's footprint is empty"
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        world.scenes["PYR_B"] = ingest(conn, world.tmp / "back", COLLECTION, B, "PYR_B")


def test_no_pixel_of_another_collection_and_no_pyramid_for_who_may_not_see(world):
    tile = centre(world.scenes["PYR_A"], 6)
    public = decode(pyramid_tile(world, tile).content)
    assert_close(public, scenes_tile(world, tile))  # the search reads `pyr` only
    with psycopg.connect(world.dsn) as conn:
        rows = conn.execute("SELECT DISTINCT collection FROM csdr.pyramid_tiles").fetchall()
    assert {r[0] for r in rows} == {COLLECTION}
    private = f"/collections/{PRIVATE}/presets/true-color/tiles/WebMercatorQuad"
    assert world.client.get(f"{private}/6/{tile.x}/{tile.y}.png").status_code == 404


def test_mosaic_tiles_answer_304_until_an_item_under_them_changes(world):
    for z in (4, 12):
        tile = centre(world.scenes["PYR_A"], z)
        r = pyramid_tile(world, tile)
        assert r.status_code == 200 and r.headers["etag"]
        assert r.headers["cache-control"].startswith("public, max-age=")
        same = pyramid_tile(world, tile)
        assert same.headers["etag"] == r.headers["etag"]
        cached = world.client.get(
            f"/collections/{COLLECTION}/presets/true-color/tiles/WebMercatorQuad/"
            f"{tile.z}/{tile.x}/{tile.y}.png",
            headers={"If-None-Match": r.headers["etag"]},
        )
        assert cached.status_code == 304 and cached.content == b""
        path = f"/searches/{world.search}/tiles/WebMercatorQuad/{z}/{tile.x}/{tile.y}.png"
        raw = {"assets": "data|bidx=3,2,1", "rescale": "600,2200"}
        s = world.client.get(path, params=raw)
        assert s.status_code == 200 and s.headers["etag"]
        s304 = world.client.get(path, params=raw, headers={"If-None-Match": s.headers["etag"]})
        assert s304.status_code == 304


def test_item_cache_control_follows_when_the_item_last_changed(world):
    fresh, old = world.scenes["PYR_FAR"], world.scenes["PYR_A"]
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE csdr.item_events SET created_at = now() - interval '30 days'"
            " WHERE collection = %s AND item_id = %s",
            (COLLECTION, old.item["id"]),
        )

    def max_age(ingested: Ingested) -> int:
        tile = ingested.centre_tile(12)
        r = world.client.get(
            f"{ingested.url}/presets/true-color/tiles/WebMercatorQuad/12/{tile.x}/{tile.y}.png"
        )
        assert r.status_code == 200
        return int(r.headers["cache-control"].split("max-age=")[1].split(",")[0])

    assert max_age(fresh) == 60  # ingested seconds ago: the floor
    assert max_age(old) == 86400  # unchanged for 30 days: a tenth is 3 days, over the ceiling


REFRESH_S = 4.0
PGSTAC_PATH = "-c search_path=pgstac,public"


@pytest.mark.slow  # waits for the background refresher
def test_after_a_change_a_low_zoom_tile_answers_at_once_then_the_refresher_catches_up(world):
    tile = centre(world.scenes["PYR_B"], 5)
    path = f"/collections/{COLLECTION}/presets/true-color/tiles/WebMercatorQuad/5/{tile.x}/{tile.y}"
    path += ".png"
    with TestClient(create_app(Settings(pyramid_refresh_s=REFRESH_S))) as client:
        before = wait_until_current(client, path)
        with psycopg.connect(world.dsn, autocommit=True) as conn:
            ingest(conn, world.tmp / "swr", COLLECTION, replace(B, seed=11), "PYR_B")
        # Answered from the stored tiles as they were, saying so: its own ETag, a max-age
        # within the refresher interval, and no 304 for the current version's tag.
        behind = client.get(path)
        assert behind.status_code == 200 and behind.content == before.content
        assert behind.headers["etag"] != before.headers["etag"]
        cache_control = behind.headers["cache-control"]
        assert cache_control.endswith("must-revalidate"), cache_control
        assert 1 <= int(cache_control.split("max-age=")[1].split(",")[0]) <= REFRESH_S
        # The refresher was woken: the new pixels come without anyone waiting for them.
        fresh = wait_until_current(client, path, timeout_s=REFRESH_S + 30)
        assert fresh.headers["etag"] not in (before.headers["etag"], behind.headers["etag"])
        assert_close(decode(fresh.content), scenes_tile(world, tile))
        assert (decode(fresh.content)[:3] != decode(before.content)[:3]).any()

        # A deleted scene stays on the map no longer than the refresher interval, whether the
        # refresher is done by then or not.
        with psycopg.connect(world.dsn, autocommit=True) as conn:
            conn.execute("SET search_path TO pgstac, public")
            deleted_at = time.monotonic()
            conn.execute("SELECT delete_item(%s, %s)", ("PYR_B", COLLECTION))
        time.sleep(max(0.0, deleted_at + REFRESH_S + 0.5 - time.monotonic()))
        gone = client.get(path)
        assert "must-revalidate" not in gone.headers["cache-control"]
        assert_close(decode(gone.content), scenes_tile(world, tile))
        assert (decode(gone.content)[3] > 0).sum() < (decode(fresh.content)[3] > 0).sum()
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        world.scenes["PYR_B"] = ingest(conn, world.tmp / "back2", COLLECTION, B, "PYR_B")


def test_truncate_and_a_deleted_collection_leave_nothing_of_their_scenes(pg_env, tmp_path):
    far = WEB_MERCATOR.tile(*centre_lon_lat(FAR), 5)
    with TestClient(create_app(Settings(pyramid_refresh_s=0))) as client:
        for forget in (
            "TRUNCATE pgstac.items",
            "SELECT delete_collection('gone')",
        ):
            path = f"/collections/gone/presets/true-color/tiles/WebMercatorQuad/5/{far.x}/{far.y}"
            with psycopg.connect(autocommit=True) as conn:
                ingest(conn, tmp_path / f"far-{len(forget)}", "gone", FAR, "GONE_FAR")
            shown = client.get(f"{path}.png")
            assert shown.status_code == 200 and decode(shown.content)[3].any(), forget
            with psycopg.connect(autocommit=True, options=PGSTAC_PATH) as conn:
                conn.execute(forget)
                left = conn.execute(
                    "SELECT count(*) FROM csdr.pyramid_tiles WHERE collection = 'gone'"
                ).fetchone()
                assert left == (0,), forget
                # Another scene, far from the first, so that the collection has presets again.
                ingest(conn, tmp_path / f"a-{len(forget)}", "gone", A, "GONE_A")
            after = client.get(f"{path}.png")
            assert after.status_code == 204, (forget, after.status_code)
            again = client.get(f"{path}.png", headers={"If-None-Match": shown.headers["etag"]})
            assert again.status_code == 204, forget
            with psycopg.connect(autocommit=True, options=PGSTAC_PATH) as conn:
                conn.execute("SELECT delete_item('GONE_A', 'gone')")
