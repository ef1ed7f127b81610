"""The lean path for an item's tiles answers exactly what the FastAPI route answers (bytes, media
type, bounds and CRS headers, ETag, Cache-Control), for preset tiles and for titiler's raw query
parameters, and leaves every error to the route. (A re-ingest seen by the next tile:
test_http_cache; who may see which tile: test_access, which runs through this path.)"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest
from fastapi import BackgroundTasks, FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from starlette.requests import Request

from csdr_tiler import lean_tiles
from csdr_tiler.app import create_app
from csdr_tiler.lean_tiles import LeanPathMismatch, LeanTiles, NotLean, solve, unsupported
from csdr_tiler.paths import ITEM_TILE_ROUTES
from csdr_tiler.settings import Settings
from services.tiler.tests.scenes import WEB_MERCATOR, Ingested, decode
from services.tiler.tests.test_presets import db  # noqa: F401 - the module's database fixture

COMPARED_HEADERS = (
    "content-type",
    "content-length",
    "content-bbox",
    "content-crs",
    "etag",
    "cache-control",
    "last-modified",
)
RGB = "assets=" + quote("data|bidx=3,2,1") + "&rescale=0,4000"
NDVI = "assets=data&expression=" + quote("(b4-b3)/(b4+b3)")


@pytest.fixture(scope="module")
def clients(db) -> Iterator[dict[str, TestClient]]:  # noqa: F811
    """The tiler with the lean path ("lean") and without it ("route")."""
    with (
        TestClient(create_app(Settings())) as lean,
        TestClient(create_app(Settings(lean_tiles=False))) as route,
    ):
        yield {"lean": lean, "route": route}


@pytest.fixture
def lean_answers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths the lean path answered itself (it leaves the others to the route)."""
    answered: list[str] = []
    respond = LeanTiles.respond

    def counted(self, route, request):  # type: ignore[no-untyped-def]
        response = respond(self, route, request)
        answered.append(request.url.path)
        return response

    monkeypatch.setattr(LeanTiles, "respond", counted)
    return answered


def same_answer(clients: dict[str, TestClient], path: str) -> Response:
    """GET `path` from both apps; assert the status, body and headers are the same; the lean
    app's answer."""
    lean, route = clients["lean"].get(path), clients["route"].get(path)
    assert lean.status_code == route.status_code, (path, lean.text[:300], route.text[:300])
    assert lean.content == route.content, path
    for header in COMPARED_HEADERS:
        assert lean.headers.get(header) == route.headers.get(header), (path, header)
    return lean


def raw_tile_path(scene: Ingested, tile_and_query: str) -> str:
    """The scene's raw-parameter tile path; `{t}` in `tile_and_query`: its centre z13 tile."""
    tile = scene.centre_tile(13)
    return f"{scene.url}/tiles/WebMercatorQuad/" + tile_and_query.format(
        t=f"{tile.z}/{tile.x}/{tile.y}"
    )


def test_preset_tiles_are_the_routes_tiles(clients, db, lean_answers):  # noqa: F811
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
        assert same_answer(clients, path).status_code == 200, path
    assert lean_answers == [p.split("?")[0] for p in paths]
    edge_alpha = decode(clients["lean"].get(paths[-1]).content)[-1]
    assert 0 < (edge_alpha > 0).mean() < 1, "the edge tile shows part of the scene"


@pytest.mark.parametrize(
    "tile_and_query",
    [
        "{t}.png?" + RGB,
        "{t}?" + RGB,  # no extension: PNG or JPEG as the mask needs
        "{t}?format=jpeg&" + RGB,
        "{t}.jpg?" + RGB + "&api_key=&unknown=1",
        "{t}.webp?" + RGB + "&color_formula=" + quote("gamma rgb 1.3"),
        "{t}.tif?assets=data",
        "{t}.png?" + RGB + "&tilesize=512&buffer=2&resampling=bilinear",
        "{t}.png?" + RGB + "&return_mask=false&nodata=0",
        "{t}.png?assets=" + quote("data|bidx=4") + "&rescale=0,4000&colormap_name=viridis",
        "{t}.png?" + NDVI + "&rescale=-1,1&colormap_name=rdylgn",
        "{t}.npy?" + NDVI,
        "{t}.png?assets=" + quote("data|bidx=1,2,3") + "&rescale=0,400&rescale=0,300&rescale=9,99",
    ],
)
def test_raw_parameter_tiles_are_the_routes_tiles(
    clients,
    db,  # noqa: F811
    lean_answers,
    tile_and_query,
):
    path = raw_tile_path(db["ms"], tile_and_query)
    lean = same_answer(clients, path)
    assert lean.status_code == 200, lean.text
    assert lean_answers == [path.split("?")[0]], "the lean path rendered it"
    if "tilesize=512&buffer=2" in path:
        assert decode(lean.content).shape[1:] == (516, 516)


def test_a_304_and_a_cached_answer_for_a_lean_tile(clients, db, lean_answers):  # noqa: F811
    ms: Ingested = db["ms"]
    tile = ms.centre_tile(13)
    path = f"{ms.url}/tiles/WebMercatorQuad/13/{tile.x}/{tile.y}.png?{RGB}&n=304"
    first = clients["lean"].get(path)
    again = clients["lean"].get(path, headers={"If-None-Match": first.headers["etag"]})
    cached = clients["lean"].get(path)
    assert first.status_code == 200 and again.status_code == 304 and cached.content == first.content
    assert again.headers["etag"] == first.headers["etag"]
    assert len(lean_answers) == 1, "the 304 and the repeat come from the tile cache"


@pytest.mark.parametrize(
    ("tile_and_query", "status", "says"),
    [
        ("40/1/1.png?" + RGB, 400, "zoom 40"),
        ("3/9/9.png?" + RGB, 400, "outside"),
        ("13/0/0.png?" + RGB, 404, "outside bounds"),
        ("{t}.png?assets=" + quote("data|bidx=9"), 400, "band 9"),
        ("{t}.png?assets=data&expression=b9", 400, "b9"),
        ("{t}.png?assets=data&expression=" + quote("(b1+"), 400, None),
        ("{t}.png?assets=data&rescale=0,4000", 400, "PNG"),  # 4 bands and a mask
        ("{t}.png?assets=nope", 404, "nope"),
        ("{t}.png?" + RGB + "&rescale=abc", 422, None),
        ("{t}.png?" + RGB + "&colormap_name=nope", 422, None),
        ("{t}.png?" + RGB + "&tilesize=0", 422, None),
        ("{t}.png?" + RGB + "&algorithm=nope", 422, None),
        ("{t}.gif?" + RGB, 422, None),
        ("{t}.png", 422, "assets"),  # no assets
        ("{t}/extra.png?" + RGB, 404, None),
    ],
)
def test_bad_input_is_the_routes_4xx(
    clients,
    db,  # noqa: F811
    lean_answers,
    tile_and_query,
    status,
    says,
):
    path = raw_tile_path(db["ms"], tile_and_query)
    answer = same_answer(clients, path)
    assert answer.status_code == status, answer.text
    assert "detail" in answer.json()
    if says:
        assert says in str(answer.json()["detail"])
    assert lean_answers == [], "errors come from the route"


def test_preset_errors_and_other_tile_matrix_sets_are_the_routes(
    clients,
    db,  # noqa: F811
    lean_answers,
):
    ms: Ingested = db["ms"]
    tile = ms.centre_tile(13)
    base = f"{ms.url}/presets/true-color/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}"
    for path, status in (
        (base.replace("/true-color/", "/pan/") + ".png", 404),  # a 4-band scene has no pan
        (base + ".png?tilesize=512&buffer=1", 200),  # read by the route: the lean path too
        (base.replace("WebMercatorQuad", "WorldCRS84Quad") + ".png", 422),
        (f"{ms.url}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png?{RGB}&reproject=x", 422),
    ):
        assert same_answer(clients, path).status_code == status, path
    assert lean_answers == [base + ".png"]
    nope = clients["lean"].get(base.replace("/true-color/", "/pan/") + ".png")
    assert "unknown preset 'pan'" in nope.json()["detail"]


def test_the_lean_routes_are_the_item_tile_routes_and_solve_as_fastapi_does(db):  # noqa: F811
    app = create_app(Settings())
    tiles = LeanTiles(app)
    lean = {c.lean.path for c in tiles.candidates if c.lean is not None}
    assert lean == ITEM_TILE_ROUTES
    # The route Starlette's router would pick, not merely one whose pattern matches: the
    # route with a format comes first, before its pattern without one (which matches too).
    scope = {"type": "http", "method": "GET", "path": "/collections/c/items/i/tiles/T/1/2/3.png"}
    route, params = tiles.select(scope) or (None, {})
    assert route is not None and route.path.endswith("{y}.{format}") and params["format"] == "png"
    assert tiles.select({**scope, "path": "/collections/c/tiles/T/1/2/3.png"}) is None
    # Anything FastAPI would need its own solver for is refused up front.
    route_dependant = route.dependant
    assert unsupported(route_dependant) is None
    with_body = type(route_dependant)(body_params=[object()])  # type: ignore[list-item]
    assert unsupported(with_body) == "a request body"

    async def gen():  # type: ignore[no-untyped-def]
        yield None

    assert "generator" in str(unsupported(type(route_dependant)(call=gen)))
    # Parameters are validated by FastAPI's own function: a bad one is not solved here.
    tile_params = next(d for d in route_dependant.dependencies if d.name == "tile_params")
    query = {**scope, "headers": [], "path_params": params}
    solved = solve(tile_params, Request({**query, "query_string": b"buffer=2"}), {})
    assert solved == {"buffer": 2.0, "padding": None}
    with pytest.raises(NotLean):
        solve(tile_params, Request({**query, "query_string": b"buffer=x"}), {})


def test_query_only_dependencies_are_solved_once_per_query_string(
    clients,
    db,  # noqa: F811
    lean_answers,
    monkeypatch,
):
    ms: Ingested = db["ms"]
    validated: list[str] = []
    validate = lean_tiles.request_params_to_args

    def counted(fields, received):  # type: ignore[no-untyped-def]
        validated.extend(f.alias for f in fields)
        return validate(fields, received)

    monkeypatch.setattr(lean_tiles, "request_params_to_args", counted)
    query = "assets=" + quote("data|bidx=3,2,1") + "&rescale=0,3333&n=shared"
    tiles = [ms.centre_tile(14), ms.centre_tile(13)]
    bodies = []
    for tile in tiles:
        path = f"{ms.url}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png?{query}"
        bodies.append(same_answer(clients, path).content)
        assert validated.count("rescale") == 1 and validated.count("z") == len(bodies)
    # Another stretch is another query string: solved anew, other pixels.
    tile = tiles[0]
    path = f"{ms.url}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png?"
    other = same_answer(clients, path + query.replace("0,3333", "0,999")).content
    assert validated.count("rescale") == 2 and other != bodies[0]
    # A query string that fails validation is not kept: tried anew, then the route answers.
    before = validated.count("buffer")
    for _ in range(2):
        assert same_answer(clients, path + query + "&buffer=x").status_code == 422
    assert validated.count("buffer") == before + 2
    assert len(lean_answers) == 3


def test_a_route_the_lean_path_cannot_answer_as_fastapi_stops_the_start():
    # What an upgrade could do to titiler's tile route: a dependency the lean path does not
    # solve (here a BackgroundTasks parameter), or the route gone from where it was.
    tile_route = sorted(ITEM_TILE_ROUTES)[0]
    app = FastAPI()

    @app.get(tile_route)
    def tile(tasks: BackgroundTasks) -> None:
        """A tile route that needs FastAPI's own solver."""

    with pytest.raises(LeanPathMismatch, match="background_tasks_param_name"):
        LeanTiles(app, paths=[tile_route])
    with pytest.raises(LeanPathMismatch, match="no routes"):
        LeanTiles(create_app(Settings()), paths=[*ITEM_TILE_ROUTES, "/collections/x/tiles"])
