"""The federation application: the change feed partner nodes pull, the peers' status, and the
worker that mirrors the peers this node registered.

Run with `uvicorn csdr_federation.app:create_app --factory`.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from csdr_access import AccessControl
from csdr_federation import health, retention
from csdr_federation.errors import add_exception_handlers
from csdr_federation.feed import Feed
from csdr_federation.routes import changes, peers
from csdr_federation.settings import Settings
from csdr_federation.sync import Worker
from csdr_service import pools
from csdr_service.guards import add_guards
from csdr_service.logs import configure_logging
from csdr_service.metrics import metrics_of
from csdr_service.openapi import complete_openapi
from csdr_storage.store import open_bucket


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the federation API; the pool, the pruner and the worker start in the lifespan."""
    settings = settings or Settings()
    configure_logging(settings.log_level, quiet={"httpx": logging.WARNING})

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await pools.open_pool(8, "csdr-federation", pgstac=True)
        app.state.pool = pool
        keep = timedelta(days=settings.retention_days)
        pruner = retention.pruner(pool, keep, settings.prune_interval_s)
        worker = Worker(pool, settings) if settings.worker else None
        app.state.worker = worker
        await pruner.start()
        if worker:
            await worker.start()
        try:
            yield
        finally:
            if worker:
                await worker.stop()
            await pruner.stop()
            await pool.close()

    app = FastAPI(
        title="CSDR Node federation",
        description=(
            "Node-to-node mirroring: a change feed of this node's items and collections (with "
            "deletions, a cursor that never skips a late commit, retention), and the status of "
            "the peers this node mirrors."
        ),
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.access = AccessControl(ttl_s=settings.access_ttl_s)
    bucket = open_bucket(settings.assets_url) if settings.assets_url else None
    app.state.feed = Feed(settings.node_name, settings.catalog_url, settings.asset_roots, bucket)
    add_guards(app, settings.request_timeout_s, settings.max_body_bytes)
    metrics_of(app).watch_pools(lambda: {"primary": getattr(app.state, "pool", None)})
    add_exception_handlers(app)
    app.include_router(changes.router)
    app.include_router(peers.router)
    app.include_router(health.router)
    complete_openapi(app)
    return app
