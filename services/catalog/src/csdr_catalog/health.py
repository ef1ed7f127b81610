"""Liveness and readiness: `/healthz` says the process answers, `/readyz` that pgSTAC does."""

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

logger = logging.getLogger(__name__)
router = APIRouter(tags=["Health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    """Answer 200 while the process serves requests."""
    return {"status": "ok"}


@router.get("/readyz", summary="The database answers within the readiness timeout")
async def readyz(request: Request) -> JSONResponse:
    """Answer 200 with pgSTAC's version, or 503 when the database does not answer in time."""
    timeout_s = request.app.state.csdr_settings.readiness_timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            pool = request.app.state.readpool
            async with pool.acquire() as conn:
                version = await conn.fetchval("SELECT pgstac.get_version()")
    except Exception as exc:  # any failure to reach pgSTAC means "not ready"
        logger.warning("readiness check failed: %r", exc)
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok", "pgstac": version})
