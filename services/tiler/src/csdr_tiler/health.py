"""Liveness and readiness: `/healthz` says the process answers, `/readyz` that pgSTAC does."""

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from psycopg_pool import ConnectionPool

logger = logging.getLogger(__name__)
router = APIRouter(tags=["Health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    """Answer 200 while the process serves requests."""
    return {"status": "ok"}


def _pgstac_version(pool: ConnectionPool, timeout_s: float) -> str:
    """pgSTAC's version, read through the tiler's own pool."""
    with pool.connection(timeout=timeout_s) as conn:
        row = conn.execute("SELECT pgstac.get_version()").fetchone()
    return str(row[0]) if row else ""


@router.get("/readyz", summary="The database answers within the readiness timeout")
async def readyz(request: Request) -> JSONResponse:
    """Answer 200 with pgSTAC's version, or 503 when the database does not answer in time."""
    timeout_s = request.app.state.csdr_settings.readiness_timeout_s
    try:
        # psycopg's pool is synchronous: query in a thread so that a database that hangs (not
        # only one that refuses) still gets its 503 after timeout_s.
        async with asyncio.timeout(timeout_s):
            version = await asyncio.to_thread(_pgstac_version, request.app.state.dbpool, timeout_s)
    except Exception as exc:  # any failure to reach pgSTAC means "not ready"
        logger.warning("readiness check failed: %r", exc)
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok", "pgstac": version})
