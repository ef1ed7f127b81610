"""The URL table (csdr_tiler.paths) against the routes the app really serves: every route under a
collection, an item or a search is matched by the pattern the access middleware and the tile
cache use, with the right names."""

import re

import pytest

from csdr_tiler.app import create_app
from csdr_tiler.paths import (
    COLLECTION_PATH,
    CROP_PATH,
    ITEM_PATH,
    MOSAIC_TILE_PATH,
    SEARCH_LIST_PATHS,
    SEARCH_PATH,
    SEARCH_REGISTER_PATH,
    TILE_ROUTES,
    TILE_SEGMENT,
    has_links,
)
from csdr_tiler.settings import Settings

pytestmark = pytest.mark.slow  # seconds per test (scenes, apps): make test, not test-fast

SAMPLE = {
    "collection_id": "c 1",
    "item_id": "i1",
    "search_id": "s1",
    "preset": "true-color",
    "tileMatrixSetId": "WebMercatorQuad",
    "z": "3",
    "x": "4",
    "y": "5",
    "format": "png",
}


def filled(template: str) -> str:
    """A request path for a route template (URL-quoted like a client would send it)."""
    return re.sub(r"{(\w+)(?::\w+)?}", lambda m: SAMPLE.get(m[1], "v"), template).replace(
        " ", "%20"
    )


def app_routes() -> list[str]:
    """Every path template the app serves, as its OpenAPI document lists them."""
    return list(create_app(Settings()).openapi()["paths"])


def test_every_route_is_matched_by_the_table() -> None:
    routes = app_routes()
    assert len(routes) > 100
    mosaic_tiles = 0
    for route in routes:
        path = filled(route)
        collection, search = COLLECTION_PATH.match(path), SEARCH_PATH.match(path)
        if route.startswith("/collections/{collection_id}"):
            assert collection is not None and collection["collection"] == "c%201", route
            under_item = route.startswith("/collections/{collection_id}/items/{item_id}/")
            assert (collection["item"] == "i1") == under_item, route
            assert (ITEM_PATH.match(path) is not None) == under_item, route
        else:
            assert collection is None, route
        if route.startswith("/searches/{search_id}"):
            assert search is not None and search["search"] == "s1", route
        elif route.startswith("/searches"):
            assert search is None or search["search"] in ("register", "list"), route
        is_tile = any(route.endswith(t) for t in TILE_ROUTES)
        assert TILE_SEGMENT in path or not is_tile, route  # the image limits' first filter
        # Crops read at full resolution unless sized: the image limits give them a size.
        crop = re.search(r"/(bbox/\{[^/]+|feature)[^/]*$", route) is not None
        assert (CROP_PATH.search(path) is not None) == crop, route
        tile = MOSAIC_TILE_PATH.match(path)
        if is_tile and (route.startswith("/searches/") or "/items/" not in route):
            assert tile is not None, route
            assert (tile["z"], tile["x"], tile["y"]) == ("3", "4", "5"), route
            assert (tile["preset"] == "true-color") == ("/presets/" in route), route
            mosaic_tiles += 1
        else:
            assert tile is None, route
    assert mosaic_tiles == 8  # collections and searches, raw and preset, with and without format


def test_the_paths_with_links_are_routes() -> None:
    routes = set(app_routes())
    assert SEARCH_REGISTER_PATH in routes and "/searches/{search_id}/info" in routes
    assert set(SEARCH_LIST_PATHS) & routes
    assert has_links("/searches/s1/info") and has_links(SEARCH_REGISTER_PATH)
    assert not has_links("/searches/s1/tiles/WebMercatorQuad/1/0/0.png")
