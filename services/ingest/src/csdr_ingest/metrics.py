"""The ingest service's own metrics: the queue's depth (every host's jobs, read at scrape time),
how long jobs run by outcome, and the database pool."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from psycopg_pool import ConnectionPool

from csdr_ingest import jobs
from csdr_service.metrics import Metrics

# An ingest takes seconds (a GeoTIFF) to many minutes (an orthorectified GF-2 package).
JOB_BUCKETS_S = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)


class IngestMetrics:
    """The gauges and histogram the ingest service adds to its `Metrics`."""

    def __init__(self, metrics: Metrics, pool: Callable[[], ConnectionPool]) -> None:
        """Register on `metrics`; `pool()` is the app's pool once the lifespan opened it."""
        self.pool = pool
        self.depth = metrics.gauge(
            "csdr_ingest_jobs", "Ingest jobs queued or running (the whole queue).", ("status",)
        )
        self.durations = metrics.histogram(
            "csdr_ingest_job_duration_seconds",
            "How long this process's jobs ran, by outcome.",
            JOB_BUCKETS_S,
            ("outcome",),
        )
        metrics.on_scrape(self.refresh)
        metrics.watch_pools(lambda: {"primary": pool()})

    def timed(self, outcome: str, seconds: float) -> None:
        """Record one job's duration (the workers' `timed` hook)."""
        self.durations.labels(outcome).observe(seconds)

    async def refresh(self) -> None:
        """Read the queue's depth."""
        for status, n in (await asyncio.to_thread(jobs.depth, self.pool())).items():
            self.depth.labels(status).set(n)
