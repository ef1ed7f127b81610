"""Liveness and readiness: `/healthz` says the process answers, `/readyz` that its database does.

Each service passes the probe that proves its own database is usable (pgSTAC's version, the job
queue, the outbox); the probe's answer is added to the 200 body."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

logger = logging.getLogger(__name__)

Probe = Callable[[Request], Awaitable[dict[str, str]]]


def health_router(probe: Probe, timeout_s: Callable[[Request], float]) -> APIRouter:
    """`/healthz` and `/readyz`: ready when `probe` answers within `timeout_s(request)` seconds,
    else 503 (a database that hangs, not only one that refuses)."""
    router = APIRouter(tags=["Health"])

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        """Answer 200 while the process serves requests."""
        return {"status": "ok"}

    @router.get("/readyz", summary="The database answers within the readiness timeout")
    async def readyz(request: Request) -> JSONResponse:
        """Answer 200 when the service's database answers in time, else 503."""
        try:
            async with asyncio.timeout(timeout_s(request)):
                details = await probe(request)
        except Exception as exc:  # any failure to reach the database means "not ready"
            logger.warning("readiness check failed: %r", exc)
            return JSONResponse(
                {"status": "unavailable", "database": "unreachable"}, status_code=503
            )
        return JSONResponse({"status": "ok", **details})

    return router
