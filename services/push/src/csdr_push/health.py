"""Liveness and readiness: `/healthz` says the process answers, `/readyz` that the database does."""

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
    """Answer 200 when the outbox's database answers in time, else 503."""
    timeout_s = request.app.state.settings.readiness_timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            async with request.app.state.pool.acquire() as conn:
                await conn.fetchval("SELECT 1 FROM csdr.item_events LIMIT 1")
    except Exception as exc:  # any failure to reach the database means "not ready"
        logger.warning("readiness check failed: %r", exc)
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok"})
