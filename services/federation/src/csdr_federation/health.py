"""Readiness of federation: the feed's outbox and the peers' table answer."""

from fastapi import Request

from csdr_service.health import health_router


async def _feed(request: Request) -> dict[str, str]:
    async with request.app.state.pool.acquire() as conn:
        await conn.fetchval("SELECT 1 FROM csdr.federation_peers LIMIT 1")
    return {}


router = health_router(_feed, lambda r: r.app.state.settings.readiness_timeout_s)
