"""Readiness of the tiler: pgSTAC answers its version through the tiler's own pool."""

import asyncio

from fastapi import Request

from csdr_service.health import health_router


def _query_version(request: Request) -> str:
    timeout_s = request.app.state.csdr_settings.readiness_timeout_s
    with request.app.state.dbpool.connection(timeout=timeout_s) as conn:
        row = conn.execute("SELECT pgstac.get_version()").fetchone()
    return str(row[0]) if row else ""


async def _pgstac_version(request: Request) -> dict[str, str]:
    # psycopg's pool is synchronous: query in a thread so that a database that hangs (not only
    # one that refuses) still gets its 503 after the timeout.
    return {"pgstac": await asyncio.to_thread(_query_version, request)}


router = health_router(_pgstac_version, lambda r: r.app.state.csdr_settings.readiness_timeout_s)
