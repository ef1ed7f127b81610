"""How large an image the tiler makes, and how large a filter it takes: checked before a route runs.

Every image-producing endpoint (tiles with `tilesize`/`buffer`, previews, bbox crops, features,
statistics) is bounded in pixels per side, pixels in all and estimated bytes
(`CSDR_TILER_MAX_IMAGE_SIDE`, `..._MAX_IMAGE_PIXELS`, `..._MAX_IMAGE_BYTES`); beyond them the
answer is a 400 naming the limit. A crop, feature or feature statistics asked for without a
size is read onto at most `max_image_side` pixels per side (titiler reads those at full
resolution, which for a whole scene is gigabytes). The filters of collection mosaics (CQL2 text
in the query) and registered searches (CQL2 JSON in the body) go through the node's CQL2 bounds.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from fastapi import Depends, HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from titiler.pgstac import model
from titiler.pgstac.dependencies import CollectionIdParams, SearchParams

from csdr_service import cql2_bounds
from csdr_tiler.paths import CROP_PATH, FEATURE_STATISTICS_PATH, SIZE_IN_PATH, TILE_SEGMENT

# A value is assumed to take this many bytes while read and rendered (uint16 data, its mask,
# float statistics), and an image whose bands are not listed in the request this many bands.
BYTES_PER_VALUE = 4
ASSUMED_BANDS = 4
TILE_SIZE = 256
SIZE_PARAMS = ("width", "height", "max_size")


@dataclass(frozen=True)
class ImageLimits:
    """The largest image the tiler makes."""

    max_side: int
    max_pixels: int
    max_bytes: int

    def problem(self, width: int, height: int, bands: int) -> str | None:
        """Why an image of this size may not be made, or None."""
        if min(width, height) < 1:
            return f"an image of {width}x{height} pixels has no pixels: sizes start at 1"
        if max(width, height) > self.max_side:
            return (
                f"an image of {width}x{height} pixels is larger than {self.max_side} pixels on "
                "a side (CSDR_TILER_MAX_IMAGE_SIDE)"
            )
        if width * height > self.max_pixels:
            return (
                f"an image of {width}x{height} pixels is more than {self.max_pixels} pixels "
                "(CSDR_TILER_MAX_IMAGE_PIXELS)"
            )
        size = width * height * max(bands, ASSUMED_BANDS) * BYTES_PER_VALUE
        if size > self.max_bytes:
            return (
                f"an image of {width}x{height} pixels and {bands} bands needs about {size} bytes, "
                f"more than {self.max_bytes} (CSDR_TILER_MAX_IMAGE_BYTES)"
            )
        return None


def _pixels(value: str) -> int:
    """A size parameter as whole pixels (ValueError when it is no finite number)."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(value)
    return math.ceil(number)


def requested_size(path: str, params: list[tuple[str, str]]) -> tuple[int, int] | None:
    """The output size (width, height) the request names, or None when it names none; a side
    it leaves to the image's aspect counts as large as the other. ValueError when a size is
    not a number (the route's own validation then answers)."""
    query = dict(params)
    if TILE_SEGMENT in path or "tilesize" in query:
        side = _pixels(query.get("tilesize") or str(TILE_SIZE))
        side += 2 * abs(_pixels(query.get("buffer") or "0"))
        return side, side
    if match := SIZE_IN_PATH.search(path):
        return int(match.group(1)), int(match.group(2))
    if query.get("width") or query.get("height"):
        width = _pixels(query.get("width") or query["height"])
        return width, _pixels(query.get("height") or query["width"])
    if query.get("max_size"):
        side = _pixels(query["max_size"])
        return side, side
    return None


def requested_bands(params: list[tuple[str, str]]) -> int:
    """How many bands the request lists: `bidx` values, `assets=...|bidx=1,2` and the outputs
    of an `expression` (0 when it lists none)."""
    bands = 0
    for key, value in params:
        if key == "bidx":
            bands += len(value.split(","))
        elif key == "assets" and "|bidx=" in value:
            bands += len(value.split("|bidx=", 1)[1].split(","))
        elif key == "expression":
            bands += value.count(";") + 1
    return bands


class ImageLimitMiddleware:
    """400 for an image beyond the limits, before routing; a crop without a size gets one."""

    def __init__(self, app: ASGIApp, limits: ImageLimits) -> None:
        """Wrap `app`."""
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the size the request names; fill in a crop's default size."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        raw: bytes = scope.get("query_string", b"")
        crop = bool(CROP_PATH.search(path)) or (
            scope["method"] == "POST" and bool(FEATURE_STATISTICS_PATH.search(path))
        )
        if not raw and not crop and "/tiles/" not in path:
            await self.app(scope, receive, send)
            return
        params = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
        try:
            size = requested_size(path, params)
        except ValueError:
            size = None  # not a number: the route's own validation answers
        if size is not None:
            problem = self.limits.problem(*size, requested_bands(params))
            if problem:
                response = JSONResponse({"detail": problem}, status_code=400)
                await response(scope, receive, send)
                return
        elif crop and not any(key in SIZE_PARAMS for key, _ in params):
            params.append(("max_size", str(self.limits.max_side)))
            scope = {**scope, "query_string": urlencode(params).encode("latin-1")}
        await self.app(scope, receive, send)


def _bounded(check: Any, value: Any) -> None:
    try:
        check(value)
    except cql2_bounds.FilterTooComplex as exc:
        raise HTTPException(status_code=400, detail=f"Invalid filter: {exc}") from None


@functools.wraps(CollectionIdParams)
def BoundedCollectionIdParams(*args: Any, **kwargs: Any) -> str:
    """titiler-pgstac's collection mosaic dependency, its `filter` checked against the node's
    CQL2 bounds before titiler-pgstac parses it."""
    text = kwargs.get("filter_expr")
    if text is not None:
        if kwargs.get("filter_lang") == "cql2-json":
            try:
                _bounded(cql2_bounds.check_json, orjson.loads(text))
            except orjson.JSONDecodeError as exc:
                raise HTTPException(status_code=400, detail=f"Invalid filter: {exc}") from None
        else:
            _bounded(cql2_bounds.check_text, text)
    return str(CollectionIdParams(*args, **kwargs))


def BoundedSearchParams(
    search_query: tuple[model.PgSTACSearch, model.Metadata] = Depends(SearchParams),
) -> tuple[model.PgSTACSearch, model.Metadata]:
    """titiler-pgstac's register body, its `filter` checked against the node's CQL2 bounds."""
    search, _ = search_query
    if search.filter_expr is not None:
        _bounded(cql2_bounds.check_json, search.filter_expr)
    return search_query
