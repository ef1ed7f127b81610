"""The ingest application: the jobs API and the workers that run the queue.

Run with `uvicorn csdr_ingest.app:create_app --factory`.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial

import anyio.to_thread
from fastapi import FastAPI
from psycopg_pool import ConnectionPool

from csdr_access import AccessControl
from csdr_ingest import health, replaced
from csdr_ingest.inbox import Watcher, settle_job
from csdr_ingest.jobs import Workers
from csdr_ingest.jobs import prune as prune_jobs
from csdr_ingest.metrics import IngestMetrics
from csdr_ingest.routes import jobs
from csdr_ingest.settings import Settings
from csdr_service.errors import add_exception_handlers
from csdr_service.guards import add_guards
from csdr_service.metrics import metrics_of
from csdr_service.openapi import complete_openapi
from csdr_service.periodic import Periodic


def delete_replaced(pool: ConnectionPool, settings: Settings) -> int:
    """Delete the files of replaced versions whose grace period ended."""
    with pool.connection() as conn:
        return replaced.delete_due(conn, settings.store())


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ingest API; the pool and the workers start in the lifespan."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Every worker holds a connection for a whole job; keep a few more for the API.
        pool = ConnectionPool(
            min_size=1, max_size=settings.workers + 4, open=True, kwargs={"autocommit": True}
        )
        workers = Workers(pool, settings, partial(settle_job, settings), ingest_metrics.timed)
        app.state.pool, app.state.workers = pool, workers
        workers.start()
        watcher = Watcher(pool, settings, workers.notify) if settings.inbox else None
        if watcher is not None:
            watcher.start()
        keep = timedelta(days=settings.job_retention_days)
        pruner = Periodic(
            "ingest-retention",
            settings.prune_interval_s,
            lambda: anyio.to_thread.run_sync(prune_jobs, pool, keep),
        )
        sweeper = Periodic(
            "ingest-replaced",
            max(0.5, min(settings.replaced_grace_s / 4, 30.0)),
            lambda: anyio.to_thread.run_sync(delete_replaced, pool, settings),
            "deleted %d files of replaced versions",
        )
        await pruner.start()
        await sweeper.start()
        try:
            yield
        finally:
            await sweeper.stop()
            await pruner.stop()
            if watcher is not None:
                watcher.stop()
            workers.stop()
            pool.close()

    app = FastAPI(
        title="CSDR Node ingest",
        description="Turns rasters into Cloud-Optimized GeoTIFFs and STAC items in pgSTAC.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.access = AccessControl(ttl_s=settings.access_ttl_s)
    add_exception_handlers(app, "ingest")
    add_guards(app, settings.request_timeout_s, settings.max_body_bytes)
    ingest_metrics = IngestMetrics(metrics_of(app), lambda: app.state.pool)
    app.include_router(jobs.router)
    app.include_router(health.router)
    complete_openapi(app)
    return app
