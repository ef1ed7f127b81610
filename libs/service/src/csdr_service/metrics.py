"""Prometheus metrics of a service, served at `/metrics` in the text format: requests, latency
and unexpected exceptions per route template (`/collections/{collection_id}/items`, never the
raw URL, so a crawler cannot grow the series), database pool use, and the gauges a service adds
(`Metrics.gauge`) and refreshes before each scrape (`Metrics.on_scrape`). One registry per app:
tests build many apps in one process."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.routing import iter_route_contexts
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "<unmatched>"
# Tiles and searches answer in milliseconds to seconds; a mosaic's low-zoom tile may take tens.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# A scrape must answer even when the database hangs: each refresher gets this long.
REFRESH_TIMEOUT_S = 1.0

Refresh = Callable[[], Awaitable[None]]
PoolsOf = Callable[[], dict[str, Any]]


class Metrics:
    """A service's registry, its HTTP metrics, and what refreshes its gauges before a scrape."""

    def __init__(self) -> None:
        """Create the registry and the HTTP metrics."""
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "csdr_http_requests",
            "Requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "csdr_http_request_duration_seconds",
            "Time from the request to the end of the response body, by route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.before_routing = Counter(
            "csdr_http_answered_before_routing",
            "Requests a middleware answered before any route ran, by the route the path matches"
            " and status: the tiler's response cache (200) and revalidations (304), refusals of"
            " access (401, 403, 429).",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.exceptions = Counter(
            "csdr_http_exceptions",
            "Requests that raised an unexpected exception (answered 500), by route template.",
            ["method", "route"],
            registry=self.registry,
        )
        self.refresh_failures = Counter(
            "csdr_metrics_refresh_failures",
            "Scrapes whose gauges could not be refreshed (database unreachable or slow).",
            registry=self.registry,
        )
        self.pool_connections = Gauge(
            "csdr_db_pool_connections",
            "Database connections of a pool, by state (in_use, idle).",
            ["pool", "state"],
            registry=self.registry,
        )
        self.pool_max = Gauge(
            "csdr_db_pool_max_connections",
            "The most connections a pool opens.",
            ["pool"],
            registry=self.registry,
        )
        self.pool_waiting = Gauge(
            "csdr_db_pool_waiting",
            "Requests waiting for a connection of a pool (psycopg pools only).",
            ["pool"],
            registry=self.registry,
        )
        self.refreshers: list[Refresh] = []

    def gauge(self, name: str, documentation: str, labels: tuple[str, ...] = ()) -> Gauge:
        """A gauge of this service's registry."""
        return Gauge(name, documentation, list(labels), registry=self.registry)

    def histogram(
        self,
        name: str,
        documentation: str,
        buckets: tuple[float, ...],
        labels: tuple[str, ...] = (),
    ) -> Histogram:
        """A histogram of this service's registry."""
        return Histogram(name, documentation, list(labels), buckets=buckets, registry=self.registry)

    def on_scrape(self, refresh: Refresh) -> None:
        """Run `refresh` (which sets gauges) before each scrape, within REFRESH_TIMEOUT_S."""
        self.refreshers.append(refresh)

    def watch_pools(self, pools: PoolsOf) -> None:
        """Report the use of the pools `pools()` names (asyncpg or psycopg_pool), read at
        scrape time: pools open in the lifespan, after the app is built."""

        async def refresh() -> None:
            for name, pool in pools().items():
                if pool is not None:
                    self._record_pool(name, pool)

        self.on_scrape(refresh)

    def _record_pool(self, name: str, pool: Any) -> None:
        if hasattr(pool, "get_stats"):  # psycopg_pool
            stats = pool.get_stats()
            size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
            self.pool_max.labels(name).set(pool.max_size)
            self.pool_waiting.labels(name).set(stats.get("requests_waiting", 0))
        else:  # asyncpg
            size, idle = pool.get_size(), pool.get_idle_size()
            self.pool_max.labels(name).set(pool.get_max_size())
        self.pool_connections.labels(name, "in_use").set(size - idle)
        self.pool_connections.labels(name, "idle").set(idle)

    async def exposition(self) -> bytes:
        """Refresh the gauges, then the registry in the Prometheus text format."""
        for refresh in self.refreshers:
            try:
                async with asyncio.timeout(REFRESH_TIMEOUT_S):
                    await refresh()
            except Exception as exc:  # a scrape answers with what it has
                logger.warning("metrics refresh failed: %r", exc)
                self.refresh_failures.inc()
        return generate_latest(self.registry)


class RouteTemplates:
    """The route template of a request, as the router matched it: its route (set in the scope
    by the router) looked up among the app's routes with their included routers' prefixes
    (FastAPI's `iter_route_contexts`, listed once); for a request a middleware answered before
    routing (a cached tile), the template last seen for that path, else the first route whose
    pattern matches (a full match; else a path-only one, answered 405); else UNMATCHED."""

    def __init__(self, recent_max: int = 4096) -> None:
        """Remember the templates of up to `recent_max` recent paths."""
        self.recent_max = recent_max
        self._routes: list[Any] | None = None
        self._by_route: dict[int, str | None] = {}
        self._recent: OrderedDict[tuple[str, str], str] = OrderedDict()

    def of(self, scope: Scope) -> str:
        """The template of the request `scope` describes."""
        routes = self._routes_of(scope)
        key = (scope["method"], scope["path"])
        route = scope.get("route")
        template = self._by_route.get(id(route)) if route is not None else None
        if template is None:
            template = self._recent.get(key)
        if template is None:
            template = self._match(routes, scope)
        if template != UNMATCHED:
            self._recent[key] = template
            self._recent.move_to_end(key)
            if len(self._recent) > self.recent_max:
                self._recent.popitem(last=False)
        return template

    def _routes_of(self, scope: Scope) -> list[Any]:
        if self._routes is None:  # the app's routes are all added before its first request
            self._routes = list(iter_route_contexts(getattr(scope.get("app"), "routes", ())))
            for context in self._routes:
                known = id(context.original_route)
                # A route included under two prefixes has no one template: matched instead.
                template = None if known in self._by_route else str(context.path_format)
                self._by_route[known] = template
        return self._routes

    @staticmethod
    def _match(routes: list[Any], scope: Scope) -> str:
        partial = None
        for route in routes:
            match = route.matches(scope)[0]
            if match == Match.FULL:
                return str(route.path_format)
            if match == Match.PARTIAL and partial is None:
                partial = str(route.path_format)
        return partial or UNMATCHED


class MetricsMiddleware:
    """Count and time every HTTP request by its route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        """Wrap `app`; record into `metrics`."""
        self.app = app
        self.metrics = metrics
        self.templates = RouteTemplates()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; record its status, route and duration once answered."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in METHODS else "OTHER"
        start = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        except Exception:
            self.metrics.exceptions.labels(method, self.templates.of(scope)).inc()
            raise
        finally:
            routed = "route" in scope
            route = self.templates.of(scope)
            self.metrics.requests.labels(method, route, str(status)).inc()
            if not routed and route != UNMATCHED:
                self.metrics.before_routing.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - start)


def add_metrics(app: FastAPI) -> Metrics:
    """Install the request metrics and `GET /metrics` on `app`; its `Metrics` is
    `app.state.metrics` (services add their gauges to it)."""
    metrics = Metrics()
    app.state.metrics = metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    async def serve_metrics(request: Request) -> Response:
        """The service's metrics in the Prometheus text format."""
        return Response(await metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", serve_metrics, methods=["GET"], include_in_schema=False)
    return metrics


def metrics_of(app: FastAPI) -> Metrics:
    """The `Metrics` add_metrics installed on `app`."""
    metrics: Metrics = app.state.metrics
    return metrics
