"""Readiness of discovery: pgSTAC's collections and the change stamps of migration 0016 answer."""

from fastapi import Request

from csdr_service.health import health_router


async def _records(request: Request) -> dict[str, str]:
    async with request.app.state.pool.acquire() as conn:
        await conn.fetchval("SELECT 1 FROM csdr.discovery_changes LIMIT 1")
    return {}


router = health_router(_records, lambda r: r.app.state.settings.readiness_timeout_s)
