"""Readiness of the catalog: pgSTAC answers its version through the read pool."""

from fastapi import Request

from csdr_service.health import health_router


async def _pgstac_version(request: Request) -> dict[str, str]:
    async with request.app.state.readpool.acquire() as conn:
        return {"pgstac": await conn.fetchval("SELECT pgstac.get_version()")}


router = health_router(_pgstac_version, lambda r: r.app.state.csdr_settings.readiness_timeout_s)
