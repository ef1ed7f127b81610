"""Low-zoom layers of registered searches: their pixels match a read of the scenes in the
search's own order; a caller gets the layer of the search run for them (no pixel of a collection
they may not see, at any zoom); a change under a tile reaches the layer (answered from the stored
tiles for no longer than the refresher interval); a tile not built yet is answered at once with
what is built so far, marked partial, and is complete once built; the number of layers is
bounded and registering searches builds nothing; a collection's deletion or a TRUNCATE drops the
layers that read it.
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
from httpx import Response

from csdr_access.admin import add_org, issue_key, set_policy
from csdr_tiler.app import create_app
from csdr_tiler.mosaics import DERIVED_TYPE
from csdr_tiler.pyramid import Layer, Pyramid
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

SEEN = "sl-seen"
HIDDEN = "sl-hidden"
# A and B: wide scenes (~300 km), B later (so on top) and further east and south; A in the
# collection every caller sees, B in one only the administrator sees.
# C (older) under most of A.
C = replace(A, name="SL_C", acquired=datetime(2024, 4, 1, 3), seed=4, west=380_000)
NEWEST_FIRST = [{"field": "datetime", "direction": "desc"}]
OLDEST_FIRST = [{"field": "datetime", "direction": "asc"}]
REFRESH_S = 4.0


@dataclass
class World:
    client: TestClient  # search layers built by requests (no refresher)
    scenes_client: TestClient  # no search layers
    dsn: str
    admin: dict[str, str]
    partner: dict[str, str]
    scenes: dict[str, Ingested]
    tmp: Path


@pytest.fixture(scope="module")
def world(pg_cluster, tmp_path_factory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("search_layers")
    with module_database(pg_cluster, "t_search_layers") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            scenes = {
                "A": ingest(conn, tmp / "a", SEEN, A, "SL_A"),
                "C": ingest(conn, tmp / "c", SEEN, C, "SL_C"),
                "B": ingest(conn, tmp / "b", HIDDEN, B, "SL_B"),
            }
            set_policy(conn, HIDDEN, "private", [], "test")
            add_org(conn, "Main", "CN", "main", "test")
            add_org(conn, "Partner", "TH", "partner", "test")
            admin_key = issue_key(conn, "Main", ["admin"], "test")[0]
            partner_key = issue_key(conn, "Partner", ["read"], "test")[0]
        with (
            TestClient(create_app(Settings(pyramid_refresh_s=0))) as client,
            TestClient(create_app(SCENES_ONLY)) as scenes_client,
        ):
            yield World(
                client,
                scenes_client,
                dsn,
                {"X-API-Key": admin_key},
                {"X-API-Key": partner_key},
                scenes,
                tmp,
            )


def register(world: World, collections: list[str], sortby: list[dict], **extra) -> str:
    """A search registered by the administrator (naming no collection when `collections` is
    empty)."""
    body = {"collections": collections} if collections else {}
    r = world.client.post(
        "/searches/register", json={**body, "sortby": sortby, **extra}, headers=world.admin
    )
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def tile_path(search: str, tile: morecantile.Tile) -> str:
    return (
        f"/searches/{search}/presets/true-color/tiles/WebMercatorQuad/"
        f"{tile.z}/{tile.x}/{tile.y}.png"
    )


# titiler's own parameters: presets need a search that names a collection.
RAW = {"assets": "data|bidx=3,2,1", "rescale": "600,2200"}


def get(
    client: TestClient, search: str, tile: morecantile.Tile, headers=None, raw: bool = False
) -> Response:
    if raw:
        path = f"/searches/{search}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
        r = client.get(path, params=RAW, headers=headers or {})
    else:
        r = client.get(tile_path(search, tile), headers=headers or {})
    assert r.status_code in (200, 204), r.text
    return r


def pixels(r: Response) -> np.ndarray:
    return decode(r.content) if r.status_code == 200 else np.zeros((4, 256, 256), "uint8")


def layer_rows(world: World) -> dict[str, tuple[list[str] | None, set[int]]]:
    """Search layer -> (its collections, the levels stored)."""
    with psycopg.connect(world.dsn) as conn:
        rows = conn.execute(
            "SELECT l.search, l.collections, array_remove(array_agg(DISTINCT t.z), NULL)"
            " FROM csdr.search_layers l LEFT JOIN csdr.search_pyramid_tiles t USING (search)"
            " GROUP BY 1, 2"
        ).fetchall()
    return {s: (c, {int(z) for z in levels}) for s, c, levels in rows}


@pytest.mark.parametrize("z", [5, 6, 8])
def test_a_search_layer_has_the_scenes_pixels_in_the_search_order(world, z):
    tile = world.scenes["A"].centre_tile(z)
    newest = register(world, [SEEN], NEWEST_FIRST)
    oldest = register(world, [SEEN], OLDEST_FIRST)
    for search in (newest, oldest):
        got = get(world.client, search, tile)
        assert got.status_code == 200 and "x-csdr-pyramid" not in got.headers
        assert_close(decode(got.content), decode(get(world.scenes_client, search, tile).content))
        assert z in layer_rows(world)[search][1] and 8 in layer_rows(world)[search][1]
    # C lies under most of A: the order decides which one shows there.
    first = decode(get(world.client, newest, tile).content)
    last = decode(get(world.client, oldest, tile).content)
    assert (first[:3] != last[:3]).any()


@pytest.mark.parametrize("z", [5, 7, 8])
def test_a_caller_gets_no_pixel_of_a_collection_they_may_not_see(world, z):
    both = register(world, [SEEN, HIDDEN], NEWEST_FIRST)
    seen_only = register(world, [SEEN], NEWEST_FIRST)
    tile = world.scenes["B"].centre_tile(z)
    partner = pixels(get(world.client, both, tile, world.partner))
    admin = pixels(get(world.client, both, tile, world.admin))
    # The partner's layer is the search narrowed to what they see: the SEEN-only mosaic.
    assert_close(partner, pixels(get(world.client, seen_only, tile, world.admin)))
    assert_close(partner, pixels(get(world.scenes_client, both, tile, world.partner)))
    assert_close(admin, pixels(get(world.scenes_client, both, tile, world.admin)))
    assert (admin[3] > 0).sum() > (partner[3] > 0).sum() + 1000, "B's footprint"
    layers = layer_rows(world)
    assert layers[both][0] == [HIDDEN, SEEN] and z in layers[both][1]
    with psycopg.connect(world.dsn) as conn:
        (narrowed,) = conn.execute(
            "SELECT hash FROM pgstac.searches WHERE metadata->>'of' = %s"
            " AND metadata->>'type' = %s",
            (both, DERIVED_TYPE),
        ).fetchone()
    assert layers[narrowed][0] == [SEEN] and z in layers[narrowed][1]


def test_non_neutral_requests_read_the_scenes(world):
    search = register(world, [SEEN], NEWEST_FIRST, datetime="2024-01-02T00:00:00Z/..")
    tile = world.scenes["A"].centre_tile(6)
    path = f"/searches/{search}/tiles/WebMercatorQuad/6/{tile.x}/{tile.y}.png"
    for extra in ({"buffer": "2"}, {"pixel_selection": "highest"}, {"padding": "1"}):
        r = world.client.get(path, params={**RAW, **extra})
        assert r.status_code == 200, r.text
        scenes = world.scenes_client.get(path, params={**RAW, **extra})
        assert r.content == scenes.content, extra
    r = world.client.get(path, params=RAW)  # the raw route with neutral options: the layer
    assert r.status_code == 200 and 6 in layer_rows(world)[search][1]


def folded_stale(world: World, search: str, tile: morecantile.Tile) -> bool:
    """Whether the search layer's stored tile is marked stale once pending changes are folded."""
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        conn.execute("SELECT csdr.fold_tile_changes()")
        (stale,) = conn.execute(
            "SELECT count(*) FROM csdr.search_pyramid_tiles"
            " WHERE search = %s AND z = %s AND x = %s AND y = %s AND stale_since IS NOT NULL",
            (search, tile.z, tile.x, tile.y),
        ).fetchone()
    return stale == 1


def test_a_change_under_a_tile_reaches_the_search_layer(world):
    search = register(world, [SEEN], NEWEST_FIRST, datetime="2024-01-01T00:00:00Z/..")
    tile = world.scenes["A"].centre_tile(6)
    before = get(world.client, search, tile)
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        world.scenes["A"] = ingest(conn, world.tmp / "again", SEEN, replace(A, seed=9), "SL_A")
    assert folded_stale(world, search, tile), "the fold marks the search layer's tile stale"
    after = get(world.client, search, tile)
    assert after.headers["etag"] != before.headers["etag"]
    assert (decode(after.content)[:3] != decode(before.content)[:3]).any()
    assert_close(decode(after.content), decode(get(world.scenes_client, search, tile).content))
    # A change in a collection the search does not read leaves its tiles as they are.
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        ingest(conn, world.tmp / "other", HIDDEN, replace(A, seed=12), "SL_OTHER")
    assert get(world.client, search, tile).headers["etag"] == after.headers["etag"]


@pytest.mark.slow  # waits for the background refresher
def test_a_tile_not_built_answers_at_once_with_what_is_built_then_completes(world):
    search = register(world, [SEEN], NEWEST_FIRST, datetime="2024-02-01T00:00:00Z/..")
    tile = world.scenes["A"].centre_tile(5)
    with TestClient(create_app(Settings(pyramid_refresh_s=600))) as client:
        pyramid: Pyramid = client.app.state.csdr_pyramid
        pyramid.on_behind = None  # the refresher sleeps: the test renders step by step
        # Nothing built yet: an empty partial answer, no scene read on the request.
        first = client.get(tile_path(search, tile))
        assert first.status_code == 204 and first.headers["x-csdr-pyramid"] == "partial"
        assert first.headers["cache-control"].endswith("must-revalidate")
        assert int(first.headers["cache-control"].split("max-age=")[1].split(",")[0]) <= 600
        layer = Layer.of_search(search, [SEEN])
        assert (layer, "data", 5, tile.x, tile.y) in pyramid.take_wanted()
        # One z7 quarter of the tile built: the answer shows that quarter only.
        children = [
            morecantile.Tile(4 * tile.x + dx, 4 * tile.y + dy, 7)
            for dy in range(4)
            for dx in range(4)
        ]
        child = next(c for c in children if pyramid.generation(layer, c.z, c.x, c.y) > 0)
        pyramid.refresh(layer, "data", (child.z, child.x, child.y))
        part = client.get(tile_path(search, tile))
        assert part.status_code == 200 and part.headers["x-csdr-pyramid"] == "partial"
        assert part.headers["etag"] != first.headers["etag"]
        alpha = decode(part.content)[3] > 0
        row, col = (child.y - 4 * tile.y) * 64, (child.x - 4 * tile.x) * 64
        quarter = np.zeros_like(alpha)
        quarter[row : row + 64, col : col + 64] = True
        assert alpha.any() and not (alpha & ~quarter).any()
        again = client.get(tile_path(search, tile), headers={"If-None-Match": part.headers["etag"]})
        assert again.status_code == 200, "a partial answer is never confirmed by a 304"
        pyramid.refresh(layer, "data", (tile.z, tile.x, tile.y))
        done = client.get(tile_path(search, tile))
        assert done.status_code == 200 and "x-csdr-pyramid" not in done.headers
        assert "must-revalidate" not in done.headers["cache-control"]
        assert (decode(done.content)[3] > 0).sum() > alpha.sum()
        assert_close(decode(done.content), decode(get(world.scenes_client, search, tile).content))


@pytest.mark.slow  # waits for the background refresher
def test_the_refresher_builds_a_wanted_layer_and_bounds_staleness(world):
    search = register(world, [SEEN], NEWEST_FIRST, datetime="2024-03-01T00:00:00Z/..")
    tile = world.scenes["A"].centre_tile(6)
    path = tile_path(search, tile)
    with TestClient(create_app(Settings(pyramid_refresh_s=REFRESH_S))) as client:
        first = client.get(path)
        assert first.headers["x-csdr-pyramid"] == "partial"
        built = wait_until_current(client, path, timeout_s=30)
        assert_close(decode(built.content), decode(get(world.scenes_client, search, tile).content))
        with psycopg.connect(world.dsn, autocommit=True) as conn:
            world.scenes["A"] = ingest(conn, world.tmp / "swr", SEEN, replace(A, seed=11), "SL_A")
        behind = client.get(path)
        assert behind.headers["x-csdr-pyramid"] == "behind"
        assert behind.content == built.content and behind.headers["etag"] != built.headers["etag"]
        assert 1 <= int(behind.headers["cache-control"].split("max-age=")[1].split(",")[0]) <= 4
        fresh = wait_until_current(client, path, timeout_s=REFRESH_S + 30)
        assert (decode(fresh.content)[:3] != decode(built.content)[:3]).any()
        assert_close(decode(fresh.content), decode(get(world.scenes_client, search, tile).content))
        # A deleted scene stays no longer than the refresher interval, refreshed or not.
        with psycopg.connect(world.dsn, autocommit=True) as conn:
            conn.execute("SET search_path TO pgstac, public")
            deleted_at = time.monotonic()
            conn.execute("SELECT delete_item(%s, %s)", ("SL_C", SEEN))
        time.sleep(max(0.0, deleted_at + REFRESH_S + 0.5 - time.monotonic()))
        gone = client.get(path)
        assert "x-csdr-pyramid" not in gone.headers
        assert_close(decode(gone.content), decode(get(world.scenes_client, search, tile).content))
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        world.scenes["C"] = ingest(conn, world.tmp / "c-back", SEEN, C, "SL_C")


def test_the_number_of_layers_is_bounded_and_registrations_take_only_free_places(world):
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM csdr.search_layers")
    tile = world.scenes["A"].centre_tile(4)
    bounded = Settings(pyramid_refresh_s=0, search_layers_max=2, search_layer_idle_s=600)
    with TestClient(create_app(bounded)) as client:
        layers = client.app.state.csdr_pyramid.searches
        searches = [
            register(world, [SEEN], NEWEST_FIRST, datetime=f"2024-01-{day:02d}T00:00:00Z/..")
            for day in range(10, 16)
        ]
        assert layer_rows(world) == {}, "registering alone adopts nothing"
        # The refresher's round: the latest registered, into the free places only.
        assert layers.adopt_registered() == searches[:-3:-1]
        assert layers.adopt_registered() == [], "nothing new, no free place"
        # A search asked for takes the place of one never asked for at once...
        for search in searches[:2]:
            assert get(client, search, tile).status_code == 200
        assert set(layer_rows(world)) == set(searches[:2])
        # ...but not the place of one in use: the third reads its scenes.
        assert get(client, searches[2], tile).status_code == 200
        assert set(layer_rows(world)) == set(searches[:2])
        # Once the least recently used one has not been used for the eviction time, the next
        # new search takes its place.
        with psycopg.connect(world.dsn, autocommit=True) as conn:
            conn.execute(
                "UPDATE csdr.search_layers SET asked_at = now() - interval '2 hours'"
                " WHERE search = %s",
                (searches[0],),
            )
        get(client, searches[2], tile)
        assert set(layer_rows(world)) == {searches[1], searches[2]}
        # Unused for longer than the idle time: dropped with their tiles by the refresher, and
        # not adopted again for having been registered before.
        with psycopg.connect(world.dsn, autocommit=True) as conn:
            conn.execute(
                "UPDATE csdr.search_layers SET asked_at = now() - interval '1 hour'"
                " WHERE search = %s",
                (searches[1],),
            )
        assert layers.drop_idle() == [searches[1]]
        assert layers.adopt_registered() == []
        assert set(layer_rows(world)) == {searches[2]}
        with psycopg.connect(world.dsn) as conn:
            (orphans,) = conn.execute(
                "SELECT count(*) FROM csdr.search_pyramid_tiles WHERE search <> %s",
                (searches[2],),
            ).fetchone()
        assert orphans == 0
        # Registered again (or read from its scenes): adopted into the free place.
        register(world, [SEEN], NEWEST_FIRST, datetime="2024-01-11T00:00:00Z/..")
        assert layers.adopt_registered() == [searches[1]]


@pytest.mark.slow  # waits for the background refresher
def test_the_refresher_builds_a_registered_mosaic_before_it_is_asked_for(world):
    with TestClient(create_app(Settings(pyramid_refresh_s=REFRESH_S))) as client:
        search = register(world, [SEEN], NEWEST_FIRST, datetime="2024-01-20T00:00:00Z/..")
        tile = world.scenes["A"].centre_tile(5)
        deadline = time.monotonic() + 60
        while 5 not in layer_rows(world).get(search, (None, set()))[1]:
            assert time.monotonic() < deadline, "the refresher never built it"
            time.sleep(0.2)
        r = get(client, search, tile)
        assert r.status_code == 200 and "x-csdr-pyramid" not in r.headers
        assert_close(decode(r.content), decode(get(world.scenes_client, search, tile).content))


def test_deleting_a_collection_or_truncating_drops_the_layers_reading_it(pg_env, tmp_path):
    with TestClient(create_app(Settings(pyramid_refresh_s=0))) as client:
        with psycopg.connect(autocommit=True) as conn:
            ingest(conn, tmp_path / "keep", "keep", A, "KEEP_A")
            ingest(conn, tmp_path / "gone", "gone", B, "GONE_B")
        tile = WEB_MERCATOR.tile(*centre_lon_lat(B), 5)
        ids = {
            name: client.post("/searches/register", json={"collections": cols}).json()["id"]
            for name, cols in {"keep": ["keep"], "gone": ["gone"], "both": ["keep", "gone"]}.items()
        }
        for search in ids.values():
            assert client.get(tile_path(search, tile)).status_code in (200, 204)

        def kept() -> set[str]:
            with psycopg.connect() as conn:
                return {r[0] for r in conn.execute("SELECT search FROM csdr.search_layers")}

        assert kept() == set(ids.values())
        with psycopg.connect(autocommit=True, options="-c search_path=pgstac,public") as conn:
            conn.execute("SELECT delete_collection('gone')")
        assert kept() == {ids["keep"]}
        # `both` now reads what is left: `keep` (as a derived search: `gone` is not visible).
        r = client.get(tile_path(ids["both"], tile))
        assert r.status_code == 200 and len(kept()) == 2
        with psycopg.connect(autocommit=True, options="-c search_path=pgstac,public") as conn:
            conn.execute("TRUNCATE pgstac.items")
            (left,) = conn.execute("SELECT count(*) FROM csdr.search_pyramid_tiles").fetchone()
        assert kept() == set() and left == 0


def test_a_search_naming_no_collection_is_every_visible_one(world):
    search = register(world, [], NEWEST_FIRST, datetime="2024-01-03T00:00:00Z/..")
    tile = world.scenes["B"].centre_tile(6)
    admin = pixels(get(world.client, search, tile, world.admin, raw=True))
    partner = pixels(get(world.client, search, tile, world.partner, raw=True))
    assert_close(admin, pixels(get(world.scenes_client, search, tile, world.admin, raw=True)))
    assert_close(partner, pixels(get(world.scenes_client, search, tile, world.partner, raw=True)))
    assert (admin[3] > 0).sum() > (partner[3] > 0).sum() + 1000, "B only for the administrator"
    assert layer_rows(world)[search][0] is None, "the administrator's layer reads every one"
    # A change in any collection reaches it.
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        ingest(conn, world.tmp / "any", HIDDEN, replace(B, seed=13), "SL_B")
    assert folded_stale(world, search, tile)
    after = pixels(get(world.client, search, tile, world.admin, raw=True))
    assert (after[:3] != admin[:3]).any()
    assert_close(after, pixels(get(world.scenes_client, search, tile, world.admin, raw=True)))


@pytest.mark.parametrize(
    "params",
    [
        {"assets": "data", "expression": "(b9-b1)/(b9+b1)"},
        {"assets": "data", "expression": "(b4-b3)/(b4+"},
        {"assets": "data|bidx=9"},
        {"assets": "nope"},
    ],
)
def test_bad_input_on_a_search_layer_is_a_4xx(world, params):
    search = register(world, [SEEN], NEWEST_FIRST)
    tile = world.scenes["A"].centre_tile(5)
    path = f"/searches/{search}/tiles/WebMercatorQuad/5/{tile.x}/{tile.y}.png"
    assert get(world.client, search, tile).status_code == 200  # the layer is built here
    r = world.client.get(path, params=params)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)


def test_a_tile_is_answered_from_the_source_its_etag_names(world):
    """Whether a search's layer answers is decided once per request, for the ETag, and the
    render follows it: a layer taken or dropped in between cannot put a scene read under the
    layer's ETag (or the other way round)."""
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM csdr.search_layers")
    tile = world.scenes["A"].centre_tile(5)
    search = register(world, [SEEN], NEWEST_FIRST, datetime="2024-02-01T00:00:00Z/..")
    with TestClient(create_app(Settings(pyramid_refresh_s=0, search_layers_max=1))) as client:
        layers = client.app.state.csdr_pyramid.searches
        decisions: list[bool] = []
        use = layers.use

        def counted(layer):
            decisions.append(use(layer))
            return decisions[-1]

        layers.use = counted
        first = get(client, search, tile)
        assert decisions == [True], "one decision per request, taken for the ETag"
        assert set(layer_rows(world)) == {search}
        # Another search cannot take the only place (the first is in use): read from its scenes,
        # under an ETag that says so, with no second decision at render time.
        other = register(world, [SEEN], NEWEST_FIRST, datetime="2024-02-02T00:00:00Z/..")
        second = get(client, other, tile)
        assert decisions == [True, False]
        assert set(layer_rows(world)) == {search}
        assert first.headers["etag"] != second.headers["etag"]
