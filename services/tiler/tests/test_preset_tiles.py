"""The lean path for an item's plain preset tiles answers exactly what titiler's route answers
(bytes, media type, bounds and CRS headers, ETag), and leaves everything else to the route.
(A re-ingest seen by the next preset tile: test_http_cache.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from csdr_tiler.app import create_app
from csdr_tiler.preset_tiles import PresetTiles
from csdr_tiler.settings import Settings
from services.tiler.tests.scenes import WEB_MERCATOR, Ingested, decode
from services.tiler.tests.test_presets import db  # noqa: F401 - the module's database fixture

COMPARED_HEADERS = ("content-type", "content-bbox", "content-crs", "etag", "cache-control")


@pytest.fixture(scope="module")
def clients(db) -> Iterator[dict[str, TestClient]]:  # noqa: F811
    """The tiler with the lean path ("lean") and without it ("route")."""
    with (
        TestClient(create_app(Settings())) as lean,
        TestClient(create_app(Settings(lean_preset_tiles=False))) as route,
    ):
        yield {"lean": lean, "route": route}


@pytest.fixture
def lean_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tiles the lean path rendered itself (it leaves the others to the route)."""
    calls: list[str] = []
    render = PresetTiles.render

    def counted(self, catalogue, version, match):  # type: ignore[no-untyped-def]
        tile = render(self, catalogue, version, match)
        calls.append(match.string)
        return tile

    monkeypatch.setattr(PresetTiles, "render", counted)
    return calls


def test_plain_preset_tiles_are_the_routes_tiles(clients, db, lean_calls):  # noqa: F811
    ms: Ingested = db["ms"]
    paths = []
    for z in (12, 13, 14):
        tile = ms.centre_tile(z)
        for preset in ("true-color", "false-color", "ndvi"):
            base = f"{ms.url}/presets/{preset}/tiles/WebMercatorQuad/{z}/{tile.x}/{tile.y}"
            paths += [f"{base}.png", base, f"{base}.jpg?api_key=&unrelated=1"]
    # A tile at a corner of the footprint: partly empty, masked in the PNG's alpha.
    lon, lat = ms.item["geometry"]["coordinates"][0][0]
    corner = WEB_MERCATOR.tile(lon, lat, 13)
    paths.append(f"{ms.url}/presets/true-color/tiles/WebMercatorQuad/13/{corner.x}/{corner.y}.png")
    for path in paths:
        lean, route = clients["lean"].get(path), clients["route"].get(path)
        assert lean.status_code == route.status_code == 200, (path, lean.text, route.text)
        assert lean.content == route.content, path
        for header in COMPARED_HEADERS:
            assert lean.headers.get(header) == route.headers.get(header), (path, header)
    assert lean_calls == [p.split("?")[0] for p in paths]
    edge_alpha = decode(clients["lean"].get(paths[-1]).content)[-1]
    assert 0 < (edge_alpha > 0).mean() < 1, "the edge tile shows part of the scene"


def test_a_304_and_a_cached_answer_for_a_lean_tile(clients, db, lean_calls):  # noqa: F811
    ms: Ingested = db["ms"]
    tile = ms.centre_tile(13)
    path = f"{ms.url}/presets/pan/tiles/WebMercatorQuad/13/{tile.x}/{tile.y}.png"
    first = clients["lean"].get(path)
    assert first.status_code == 404  # a 4-band scene has no pan preset: the route says so
    assert "unknown preset 'pan'" in first.json()["detail"]
    path = path.replace("/pan/", "/true-color/")
    first = clients["lean"].get(path + "?n=304")
    again = clients["lean"].get(path + "?n=304", headers={"If-None-Match": first.headers["etag"]})
    cached = clients["lean"].get(path + "?n=304")
    assert first.status_code == 200 and again.status_code == 304 and cached.content == first.content
    assert len(lean_calls) == 1, "the 304 and the repeat come from the tile cache"


@pytest.mark.parametrize(
    ("suffix", "status", "says"),
    [
        ("tiles/WebMercatorQuad/{z}/{x}/{y}.png?tilesize=512", 200, None),
        ("tiles/WebMercatorQuad/{z}/{x}/{y}.png?buffer=1", 200, None),
        ("tiles/WebMercatorQuad/40/1/1.png", 400, "zoom 40"),
        ("tiles/WebMercatorQuad/3/9/9.png", 400, "outside"),
        ("tiles/WebMercatorQuad/13/0/0.png", 404, "outside bounds"),
        ("tiles/WebMercatorQuad/{z}/{x}/{y}.gif", 422, None),
        ("tiles/WorldCRS84Quad/{z}/{x}/{y}.png", 422, None),
    ],
)
def test_everything_else_is_the_routes_answer(clients, db, suffix, status, says):  # noqa: F811
    ms: Ingested = db["ms"]
    tile = ms.centre_tile(13)
    path = f"{ms.url}/presets/true-color/" + suffix.format(z=tile.z, x=tile.x, y=tile.y)
    lean, route = clients["lean"].get(path), clients["route"].get(path)
    assert lean.status_code == route.status_code == status, (lean.text, route.text)
    assert lean.content == route.content
    if says:
        assert says in lean.json()["detail"]
    if "tilesize=512" in path:
        assert decode(lean.content).shape[1:] == (512, 512)
    if "buffer=1" in path:
        assert decode(lean.content).shape[1:] == (258, 258)
