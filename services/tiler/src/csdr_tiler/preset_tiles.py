"""The lean path for an item's preset XYZ tiles: what QGIS asks for, dozens at a time.

`/collections/{c}/items/{i}/presets/{p}/tiles/WebMercatorQuad/{z}/{x}/{y}[.{format}]` is
titiler's tile route with our preset dependencies. Through FastAPI it costs ~6 ms of GIL-bound
Python per tile besides the read (profiled with py-spy at 8 concurrent clients): route matching
over ~200 routes, about fifteen dependencies solved one by one, each sync one in its own worker
thread hop, then the endpoint in another. This ASGI handler answers the same request with the
same reader, the same dependency values and the same render function in one worker thread hop.

It sits inside the access middleware (which has judged the caller: a collection they may not see
never gets here) and the tile cache (which has read the item's version, answers 304s and cached
tiles, and caches what this returns). It takes only the plain case: a GET with no query
parameter that the route would read (`api_key` and unknown ones are ignored there too). Anything
else, and any failure (unknown preset, a tile outside the matrix or the item, a read error),
goes to the FastAPI route, whose answer (and error shape) is then the one the caller gets.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

import anyio.to_thread
import rasterio
from fastapi.dependencies.utils import get_flat_params
from fastapi.routing import APIRoute
from rio_tiler.utils import CRS_to_uri
from starlette.types import ASGIApp, Receive, Scope, Send
from titiler.core.factory import MultiBaseTilerFactory
from titiler.core.resources.enums import ImageType

from csdr_tiler.dependencies import (
    PresetColormap,
    PresetLayerParams,
    PresetRenderParams,
    tile_problem,
)
from csdr_tiler.items import Catalogue, ItemVersion
from csdr_tiler.tms import WEB_MERCATOR, WEB_MERCATOR_ID

logger = logging.getLogger(__name__)

PREFIX = "/collections/{collection_id}/items/{item_id}/presets/{preset}"
TILE_ROUTE = "/tiles/{tileMatrixSetId}/{z}/{x}/{y}.{format}"
PRESET_TILE_PATH = re.compile(
    r"^/collections/(?P<collection>[^/]+)/items/(?P<item>[^/]+)/presets/(?P<preset>[^/]+)"
    rf"/tiles/{WEB_MERCATOR_ID}/(?P<z>\d{{1,2}})/(?P<x>\d{{1,9}})/(?P<y>\d{{1,9}})"
    r"(?:\.(?P<format>\w+))?$"
)
# Query parameters the lean path ignores as the route does: the key, read by the access
# middleware.
IGNORED = {"api_key"}


class NotPlain(Exception):
    """The request is not the plain case: the FastAPI route answers it."""


@dataclass(frozen=True)
class Tile:
    """A rendered tile: body, media type and titiler's headers."""

    body: bytes
    media_type: str
    headers: list[tuple[bytes, bytes]]


def route_parameters(factory: MultiBaseTilerFactory, path: str) -> frozenset[str]:
    """The parameters (path and query) the factory's GET route at `path` reads."""
    for route in factory.router.routes:
        if isinstance(route, APIRoute) and route.path == path and "GET" in (route.methods or ()):
            return frozenset(p.alias for p in get_flat_params(route.dependant))
    raise LookupError(f"the factory has no GET route {path}")


class PresetTiles:
    """Render an item's preset tile as the factory's tile route does (see the module)."""

    def __init__(self, factory: MultiBaseTilerFactory) -> None:
        """Read with `factory`'s reader and its default reader, tile, dataset and environment
        options; render with its render function."""
        self.factory = factory
        self.reader_options = factory.reader_dependency().as_dict()
        self.tile_options = {
            **factory.tile_dependency().as_dict(),
            **factory.dataset_dependency().as_dict(),
        }
        self.environment = factory.environment_dependency()
        # A query parameter of one of these names changes the tile: the route reads it.
        self.parameters = route_parameters(factory, TILE_ROUTE) - IGNORED

    def render(
        self,
        catalogue: Catalogue,
        version: ItemVersion | None,
        match: re.Match[str],
    ) -> Tile:
        """The tile `match` names; NotPlain (or the reader's error) when the route must answer."""
        collection, item_id = unquote(match["collection"]), unquote(match["item"])
        output = ImageType(match["format"]) if match["format"] else None
        z, x, y = int(match["z"]), int(match["x"]), int(match["y"])
        if tile_problem(WEB_MERCATOR, z, x, y) is not None:
            raise NotPlain("not a tile of the matrix")
        if version is None:
            version = catalogue.item_version(collection, item_id)
        item = catalogue.item(collection, item_id, version.version)
        preset = catalogue.item_presets(item, version.version).get(unquote(match["preset"]))
        if preset is None:
            raise NotPlain("no such preset")
        layer = PresetLayerParams(preset).as_dict()
        with (
            rasterio.Env(**self.environment),
            self.factory.reader(item, tms=WEB_MERCATOR, **self.reader_options) as src,
        ):
            image = src.tile(x, y, z, tilesize=None, **self.tile_options, **layer)
            dst_colormap = getattr(src, "colormap", None)
        body, media_type = self.factory.render_func(
            image,
            output_format=output,
            colormap=PresetColormap(preset) or dst_colormap,
            **PresetRenderParams(preset).as_dict(),
        )
        headers = []
        if image.bounds is not None:
            headers.append((b"content-bbox", ",".join(map(str, image.bounds)).encode()))
        if uri := CRS_to_uri(image.crs):
            headers.append((b"content-crs", f"<{uri}>".encode()))
        return Tile(body, media_type, headers)


class PresetTileMiddleware:
    """Answer plain preset tile requests of an item without FastAPI (see the module)."""

    def __init__(self, app: ASGIApp, tiles: PresetTiles) -> None:
        """Wrap `app`, answering plain requests with `tiles`."""
        self.app = app
        self.tiles = tiles

    def is_plain(self, scope: Scope) -> re.Match[str] | None:
        """The path's parts when this request is the plain case."""
        if scope["type"] != "http" or scope["method"] != "GET":
            return None
        match = PRESET_TILE_PATH.match(scope.get("path", ""))
        if match is None:
            return None
        query = scope.get("query_string", b"")
        if query:
            names = {k for k, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True)}
            if names & self.tiles.parameters:
                return None
        if match["format"] is not None and match["format"] not in ImageType.__members__:
            return None
        return match

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The tile, or the FastAPI route's answer when this is not the plain case."""
        match = self.is_plain(scope)
        if match is None:
            await self.app(scope, receive, send)
            return
        catalogue: Catalogue = scope["app"].state.csdr_catalogue
        version: ItemVersion | None = scope.get("state", {}).get("item_version")
        try:
            tile = await anyio.to_thread.run_sync(self.tiles.render, catalogue, version, match)
        except Exception as exc:  # the route answers, with its own status and error shape
            logger.debug("preset tile %s left to the route: %r", scope["path"], exc)
            await self.app(scope, receive, send)
            return
        headers = [
            (b"content-length", str(len(tile.body)).encode()),
            (b"content-type", tile.media_type.encode()),
            *tile.headers,
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": tile.body})
