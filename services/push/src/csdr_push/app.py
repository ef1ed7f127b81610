"""The push application: the subscriptions API and the worker that delivers their matches.

Run with `uvicorn csdr_push.app:create_app --factory`.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from csdr_access import AccessControl
from csdr_push import deliveries, health
from csdr_push.errors import add_exception_handlers
from csdr_push.metrics import PushMetrics
from csdr_push.routes import subscriptions
from csdr_push.settings import Settings
from csdr_push.worker import Worker
from csdr_service import pools
from csdr_service.guards import add_guards
from csdr_service.logs import configure_logging
from csdr_service.metrics import metrics_of
from csdr_service.openapi import complete_openapi
from csdr_service.periodic import Periodic


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the push API; the pool and the worker start in the lifespan."""
    settings = settings or Settings()
    # httpx logs every request at INFO: one line per delivery attempt is ours to write.
    configure_logging(settings.log_level, quiet={"httpx": logging.WARNING})

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Each in-flight delivery records its outcome through the pool; keep a few for the API.
        pool = await pools.open_pool(min(settings.concurrency, 16) + 4, "csdr-push")
        worker = Worker(pool, settings) if settings.worker else None
        keep = timedelta(days=settings.retention_days)
        pruner = Periodic(
            "push-retention",
            settings.prune_interval_s,
            lambda: deliveries.prune(pool, keep),
        )
        app.state.pool = pool
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
        title="CSDR Node push",
        description=(
            "Subscriptions to new scenes over an area: signed CloudEvents webhooks (Standard "
            "Webhooks) with retries and dead letters, and an Atom feed per subscription."
        ),
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.access = AccessControl(ttl_s=settings.access_ttl_s)
    add_exception_handlers(app)
    # Browsers (the portal) send the key as a header: the preflight must allow it.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
        allow_headers=["Content-Type", "Authorization", "X-API-Key"],
    )
    add_guards(app, settings.request_timeout_s, settings.max_body_bytes)
    PushMetrics(metrics_of(app), lambda: app.state.pool)
    app.include_router(subscriptions.router)
    app.include_router(health.router)
    complete_openapi(app)
    return app
