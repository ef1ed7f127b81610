"""The lean path for an item's XYZ tiles: what QGIS and developers ask for, dozens at a time.

`/collections/{c}/items/{i}/tiles/{tms}/{z}/{x}/{y}[.{format}]` (titiler's raw query parameters)
and `/collections/{c}/items/{i}/presets/{p}/tiles/...` (our presets) are titiler's tile routes.
Through FastAPI a tile cost ~5 ms of GIL-bound Python besides the read (profiled with py-spy and
/proc CPU at 8 concurrent clients): route matching through the included routers, about fifteen
dependencies solved one by one, each sync one in its own worker-thread hop (anyio's capacity
limiter, task and cancel-scope bookkeeping on the event loop each time), then the endpoint in
another hop.

This ASGI handler answers the same request with the same route: it picks the route as
Starlette's router does (the first route of the app, in order, whose path pattern matches and
which accepts GET), solves that route's own dependency tree (titiler's dependency classes, our
preset dependencies) with FastAPI's own parameter validation, `request_params_to_args`, and calls
the route's endpoint, all in one worker-thread hop; the endpoint's `Response` is sent as is. So
the body and headers are the route's by construction, and no parsing rule lives here.

It sits inside the access middleware (which has judged the caller: a collection they may not see
never gets here) and the tile cache (which has read the item's version, answers 304s and cached
tiles, and caches what this returns). Anything it does not handle, and every failure (a
parameter FastAPI rejects, an unknown preset, a tile outside the matrix or the item, a read
error), goes to the FastAPI route, whose answer (status, message, error shape) the caller gets.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from cachetools import LRUCache
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import request_params_to_args
from fastapi.routing import RouteContext, iter_route_contexts
from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from csdr_tiler.dependencies import IN_THREAD
from csdr_tiler.paths import ITEM_TILE_ROUTES, TILE_SEGMENT

logger = logging.getLogger(__name__)


class NotLean(Exception):
    """The request is not one this path answers: the FastAPI route answers it."""


def unsupported(dependant: Dependant) -> str | None:
    """Why the dependency tree needs FastAPI's own solver (a body, a generator, a coroutine
    without a blocking twin, security scopes, a Response to fill...), or None."""
    if dependant.body_params:
        return "a request body"
    for name in (
        "websocket_param_name",
        "response_param_name",
        "background_tasks_param_name",
        "security_scopes_param_name",
        "own_oauth_scopes",
        "concurrency",
    ):
        if getattr(dependant, name):
            return name
    call = dependant.call
    if call is not None and call not in IN_THREAD:
        if inspect.isgeneratorfunction(call) or inspect.isasyncgenfunction(call):
            return f"generator dependency {call!r}"
        if inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(
            getattr(call, "__call__", None)  # noqa: B004 - a callable instance's method
        ):
            return f"coroutine {call!r} without a blocking twin"
    for sub in dependant.dependencies:
        if (why := unsupported(sub)) is not None:
            return why
    return None


def query_only(dependant: Dependant) -> bool:
    """Whether a dependency's value follows from the query string alone: no path, header or
    cookie parameter, no request, and the same for everything it depends on."""
    return not (
        dependant.path_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.request_param_name
        or dependant.http_connection_param_name
    ) and all(query_only(sub) for sub in dependant.dependencies)


class QueryValues:
    """The values of a route's query-only dependencies (titiler's parameter classes: layer,
    render, colormap, dataset, algorithm...) by query string, shared between requests: a map
    client asks for hundreds of tiles with one query string, and validating it costs ~0.3 ms
    of FastAPI's per-field introspection every time. titiler's classes are functions of their
    parameters, and the tile endpoint only reads their values. Bounded, least recently used
    dropped first."""

    def __init__(self, calls: Iterable[Any], max_entries: int = 1024) -> None:
        """Keep values of the dependencies `calls`, up to `max_entries` of them."""
        self.calls = frozenset(calls)
        self._lock = threading.Lock()
        self._values: LRUCache[tuple[Any, bytes], Any] = LRUCache(maxsize=max_entries)

    def value(self, call: Any, query: bytes, solve_it: Callable[[], Any]) -> Any:
        """The value of `call` for query string `query`: kept, else solved and kept."""
        key = (call, query)
        with self._lock:
            if key in self._values:
                return self._values[key]
        found = solve_it()
        with self._lock:
            self._values[key] = found
        return found


def solve(
    dependant: Dependant,
    request: Request,
    cache: dict[Any, Any],
    shared: QueryValues | None = None,
) -> dict[str, Any]:
    """The arguments of `dependant.call`, as FastAPI's `solve_dependencies` finds them for the
    dependency trees `unsupported` accepts: sub-dependencies first (each solved once per request,
    as FastAPI caches them; those in `shared` once per query string), then path, query, header
    and cookie parameters validated by FastAPI's `request_params_to_args`. NotLean on any
    validation error (nothing is kept then)."""
    values: dict[str, Any] = {}
    for sub in dependant.dependencies:
        call = sub.call
        assert call is not None

        def solve_it(sub: Dependant = sub, call: Any = call) -> Any:
            return IN_THREAD.get(call, call)(**solve(sub, request, cache, shared))

        if sub.use_cache and call in cache:
            solved = cache[call]
        elif shared is not None and call in shared.calls:
            solved = shared.value(call, request.scope.get("query_string", b""), solve_it)
        else:
            solved = solve_it()
        cache.setdefault(call, solved)
        if sub.name is not None:
            values[sub.name] = solved
    for fields, received in (
        (dependant.path_params, request.path_params),
        (dependant.query_params, request.query_params),
        (dependant.header_params, request.headers),
        (dependant.cookie_params, request.cookies),
    ):
        if fields:
            found, errors = request_params_to_args(fields, received)
            if errors:
                raise NotLean(f"invalid parameters: {errors!r}")
            values.update(found)
    if dependant.request_param_name:
        values[dependant.request_param_name] = request
    if dependant.http_connection_param_name:
        values[dependant.http_connection_param_name] = request
    return values


def query_only_calls(dependant: Dependant) -> set[Any]:
    """The dependencies in the tree whose values follow from the query string alone."""
    found: set[Any] = set()
    for sub in dependant.dependencies:
        if query_only(sub):
            found.add(sub.call)
        else:
            found |= query_only_calls(sub)
    return found


@dataclass(frozen=True)
class Candidate:
    """One of the app's routes, in the router's order: its path pattern, whether it accepts GET,
    and the route itself when this path answers it."""

    pattern: Any
    convertors: dict[str, Any]
    accepts_get: bool
    lean: RouteContext | None


class LeanPathMismatch(RuntimeError):
    """The app's tile routes are not what this path can answer as they do (an upgrade of
    FastAPI or titiler changed them): the tiler refuses to start rather than serve them another
    way unnoticed."""


class LeanTiles:
    """Select and run the app's own tile routes without FastAPI's per-request machinery."""

    def __init__(self, app: FastAPI, paths: Iterable[str] = ITEM_TILE_ROUTES) -> None:
        """Every route of `app` in order; those at `paths` answered here. LeanPathMismatch when
        one of `paths` is not a route of the app, or its dependency tree needs FastAPI's own
        solver (see `unsupported`)."""
        paths = frozenset(paths)
        self.candidates: list[Candidate] = []
        for route in iter_route_contexts(app.router.routes):
            lean = None
            if route.path in paths:
                why = unsupported(route.dependant)
                if why is None and inspect.iscoroutinefunction(route.dependant.call):
                    why = "an async endpoint"
                if why is not None:
                    raise LeanPathMismatch(
                        f"the lean tile path cannot answer {route.path} as its route does: "
                        f"{why} (turn it off with CSDR_TILER_LEAN_TILES=false, or follow the "
                        "change: docs/upstream.md)"
                    )
                lean = route
            methods = route.methods
            self.candidates.append(
                Candidate(
                    route.path_regex, route.param_convertors, not methods or "GET" in methods, lean
                )
            )
        answered = [c.lean for c in self.candidates if c.lean is not None]
        if missing := paths - {r.path for r in answered}:
            raise LeanPathMismatch(f"the app has no routes {sorted(missing)} for the lean path")
        self.shared = QueryValues(set().union(*(query_only_calls(r.dependant) for r in answered)))

    def select(self, scope: Scope) -> tuple[RouteContext, dict[str, Any]] | None:
        """The route Starlette's router would run for this GET, with its path parameters, when
        it is one answered here; else None."""
        path = get_route_path(scope)
        for candidate in self.candidates:
            found = candidate.pattern.match(path)
            if found is None or not candidate.accepts_get:
                continue  # a route for other methods only: the router looks further too
            if candidate.lean is None:
                return None
            params = {k: candidate.convertors[k].convert(v) for k, v in found.groupdict().items()}
            return candidate.lean, params
        return None

    def respond(self, route: RouteContext, request: Request) -> Response:
        """The route's endpoint called with its solved dependencies (in a worker thread)."""
        response = route.dependant.call(**solve(route.dependant, request, {}, self.shared))
        if not isinstance(response, Response):
            raise NotLean(f"the endpoint returned {type(response).__name__}, not a Response")
        return response


class LeanTileMiddleware:
    """Answer an item's tile requests with their route, without FastAPI (see the module)."""

    def __init__(self, app: ASGIApp, tiles: LeanTiles) -> None:
        """Wrap `app`, answering the routes `tiles` selects."""
        self.app = app
        self.tiles = tiles

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The route's answer: from its endpoint here, or from FastAPI on anything else."""
        selected = None
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and TILE_SEGMENT in scope["path"]
            and not scope["app"].dependency_overrides
        ):
            selected = self.tiles.select(scope)
        if selected is None:
            await self.app(scope, receive, send)
            return
        route, params = selected
        request = Request({**scope, "path_params": params}, receive)
        try:
            response = await anyio.to_thread.run_sync(self.tiles.respond, route, request)
        except Exception as exc:  # the route answers, with its own status and error shape
            logger.debug("tile %s left to the route: %r", scope["path"], exc)
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)
