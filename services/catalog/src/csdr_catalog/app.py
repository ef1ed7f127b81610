"""The catalog application: stac-fastapi-pgstac's StacApi with our client, search conventions,
error shapes and health routes.

Run with `uvicorn csdr_catalog.app:create_app --factory`.
"""

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from fastapi.utils import generate_unique_id
from stac_fastapi.pgstac.app import instantiate_api
from starlette.middleware import Middleware

from csdr_access import AccessControl
from csdr_access.periods import Clock, utc_now
from csdr_access.ratelimit import RateLimiter
from csdr_catalog import account, admin, db, downloads, errors, health
from csdr_catalog.access import AccessMiddleware
from csdr_catalog.aggregation import aggregation_extension
from csdr_catalog.client import CatalogClient
from csdr_catalog.http_cache import DocumentCacheMiddleware
from csdr_catalog.queryables import KnownProperties
from csdr_catalog.search_params import SearchConventionsExtension, WholeDaysMiddleware
from csdr_catalog.settings import Settings
from csdr_catalog.transactions import CatalogExtensions
from csdr_service.allocator import map_blocks_from
from csdr_service.guards import add_guards
from csdr_service.metrics import metrics_of
from csdr_service.openapi import complete_openapi
from csdr_service.periodic import Periodic
from csdr_service.replicas import ReadReplica
from csdr_storage.store import open_bucket

logger = logging.getLogger(__name__)


def _aggregations_by_get_only(router: APIRouter) -> None:
    """Serve the list of aggregations by GET only. Upstream registers GET and POST on one route,
    whose OpenAPI operation id then comes from a set's iteration order: random per process."""
    for route in router.routes:
        if isinstance(route, APIRoute) and route.path.endswith("/aggregations"):
            route.methods = {"GET"}
            route.unique_id = generate_unique_id(route)


# With the Fields extension a response holds only what `fields` asks for of each item or
# collection: not the Item or Collection schema any more.
NARROWED: dict[str, Any] = {
    "type": "object",
    "description": "A response narrowed by `fields` (the Fields extension)",
}


def document_narrowed_responses(doc: dict[str, Any]) -> None:
    """Let operations that take `fields` answer what the extension says they answer."""
    doc["components"]["schemas"]["Narrowed"] = NARROWED
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            takes_fields = any(p.get("name") == "fields" for p in operation.get("parameters", []))
            if not takes_fields and (path, method) != ("/search", "post"):
                continue
            for media in operation["responses"].get("200", {}).get("content", {}).values():
                media["schema"] = {
                    "anyOf": [media["schema"], {"$ref": "#/components/schemas/Narrowed"}]
                }


def with_lazy_peers(
    pools: Callable[[FastAPI], AbstractAsyncContextManager[None]], interval_s: float
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The pools' lifespan, reading the lazy peers' STAC APIs every `interval_s` meanwhile
    (csdr_catalog.downloads publishes their scenes' hrefs as this node's download route)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with pools(app):
            refresher = Periodic(
                "catalog-lazy-peers",
                interval_s,
                lambda: downloads.refresh_lazy_peers(app),
                report="lazy peers' STAC APIs changed (%d)",
            )
            await refresher.start()
            try:
                yield
            finally:
                await refresher.stop()

    return lifespan


def create_app(settings: Settings | None = None, clock: Clock = utc_now) -> FastAPI:
    """Build the STAC API; the database pools open in the lifespan, not here. `clock` tells
    the time quota periods are judged by (tests stand at any moment with it)."""
    settings = settings or Settings()
    map_blocks_from(settings.mmap_threshold_bytes)
    stac_settings = settings.stac_settings()
    extensions = CatalogExtensions(
        settings=stac_settings,
        search_map={"conventions": SearchConventionsExtension()},
        item_collection_map={"conventions": SearchConventionsExtension()},
    )

    def client(pgstac_search_model: type) -> CatalogClient:
        return CatalogClient(
            pgstac_search_model=pgstac_search_model,
            known_properties=KnownProperties(ttl_s=settings.queryables_ttl_s),
            count_exact_below=settings.count_exact_below,
            count_stats_ttl_s=settings.count_stats_ttl_s,
        )

    api = instantiate_api(
        client=client,
        extensions=extensions,
        lifespan=with_lazy_peers(
            db.lifespan(writes=settings.transactions, replica=ReadReplica()),
            settings.peers_refresh_s,
        ),
        settings=stac_settings,
    )
    app = api.app
    # The aggregation models extend the search models instantiate_api has just built, so the
    # extension joins afterwards; the client reads api.extensions for conformance and links.
    aggregation = aggregation_extension(
        api.client, api.search_get_request_model, api.search_post_request_model
    )
    api.extensions.append(aggregation)
    aggregation.register(app)
    _aggregations_by_get_only(aggregation.router)
    app.state.csdr_settings = settings
    app.state.clock = clock
    app.state.asset_roots = downloads.AssetRoots(
        settings.asset_roots,
        open_bucket(settings.assets_url) if settings.assets_url else None,
        settings.download_url_ttl_s,
        settings.download_endpoint_url,
    )
    app.add_middleware(DocumentCacheMiddleware, max_age_s=settings.cache_max_age_s)
    app.add_middleware(WholeDaysMiddleware)
    # Innermost, so CORS and compression also apply to its 401/403/404 answers.
    app.user_middleware.append(
        Middleware(
            AccessMiddleware,
            access=AccessControl(ttl_s=settings.access_ttl_s),
            limiter=RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst, "catalog"),
            writes=settings.transactions,
            linked_urls=(settings.tiler_url,) if settings.tiler_url else (),
        )
    )
    errors.install(app)
    add_guards(app, settings.request_timeout_s, settings.max_body_bytes)
    metrics_of(app).watch_pools(
        lambda: {
            "read": getattr(app.state, "readpool", None),
            "write": getattr(app.state, "writepool", None),
        }
    )
    app.include_router(health.router)
    app.include_router(account.router)
    app.include_router(admin.router)
    app.include_router(downloads.router)
    complete_openapi(app, adjust=document_narrowed_responses)
    return app
