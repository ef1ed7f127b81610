"""The orders application: orders, quotas, delivery links, usage statistics, and the watcher that
finishes orders when their productions end.

Run with `uvicorn csdr_orders.app:create_app --factory`.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from csdr_access import AccessControl
from csdr_access.periods import Clock, utc_now
from csdr_access.ratelimit import RateLimiter
from csdr_catalog.downloads import AssetRoots
from csdr_orders import health
from csdr_orders.delivery import Signer
from csdr_orders.errors import add_exception_handlers
from csdr_orders.routes import orders, usage
from csdr_orders.settings import Settings
from csdr_orders.watcher import Watcher
from csdr_service import pools
from csdr_service.guards import add_guards
from csdr_service.logs import configure_logging
from csdr_service.metrics import metrics_of
from csdr_service.node_secrets import node_secret
from csdr_service.openapi import complete_openapi

LINK_SECRET = "orders.delivery-links"
"""The name of the delivery-link key in csdr.node_secrets (when none is configured)."""


def create_app(settings: Settings | None = None, clock: Clock = utc_now) -> FastAPI:
    """Build the orders API; `clock` tells the time (tests stand at any moment with it)."""
    settings = settings or Settings()
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # No session state on these connections (no SET outside a transaction, LISTEN,
        # advisory lock or cursor): a checkout's release costs no reset round trip.
        pool = await pools.open_pool(16, "csdr-orders", pgstac=True, reset_session=False)
        app.state.pool = pool
        app.state.signer = Signer(settings.link_key() or await node_secret(pool, LINK_SECRET))
        watcher = Watcher(pool, settings, clock) if settings.worker else None
        if watcher:
            watcher.start()
        try:
            yield
        finally:
            if watcher:
                await watcher.stop()
            await pool.close()

    app = FastAPI(
        title="CSDR Node orders",
        description=(
            "Orders of scenes within yearly quotas per organisation: offline scenes produced on"
            " demand, deliveries as STAC ItemCollections with signed expiring links, progress as"
            " signed CloudEvents through push, and usage statistics from an append-only ledger."
        ),
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.clock = clock
    app.state.access = AccessControl(ttl_s=settings.access_ttl_s)
    app.state.limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst, "orders")
    app.state.roots = AssetRoots(settings.asset_roots)
    add_exception_handlers(app)
    # Browsers (the portal) send the key and an Idempotency-Key as headers: preflights allow them.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Content-Type", "Authorization", "X-API-Key", "Idempotency-Key"],
    )
    add_guards(app, settings.request_timeout_s, settings.max_body_bytes)
    metrics_of(app).watch_pools(lambda: {"primary": getattr(app.state, "pool", None)})
    app.include_router(orders.router)
    app.include_router(usage.router)
    app.include_router(health.router)
    complete_openapi(app)
    return app
