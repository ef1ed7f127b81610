"""Readiness of ingest: the job queue's table answers."""

import asyncio

from fastapi import Request

from csdr_service.health import health_router


def _query_jobs(request: Request) -> None:
    timeout_s = request.app.state.settings.readiness_timeout_s
    with request.app.state.pool.connection(timeout=timeout_s) as conn:
        conn.execute(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}")
        conn.execute("SELECT 1 FROM csdr.ingest_jobs LIMIT 1")


async def _jobs(request: Request) -> dict[str, str]:
    # psycopg's pool is synchronous: query in a thread so the readiness timeout can fire.
    await asyncio.to_thread(_query_jobs, request)
    return {}


router = health_router(_jobs, lambda r: r.app.state.settings.readiness_timeout_s)
