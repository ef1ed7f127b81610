"""Readiness of orders: the orders table answers."""

from fastapi import Request

from csdr_service.health import health_router


async def _orders(request: Request) -> dict[str, str]:
    async with request.app.state.pool.acquire() as conn:
        await conn.fetchval("SELECT 1 FROM csdr.orders LIMIT 1")
    return {}


router = health_router(_orders, lambda r: r.app.state.settings.readiness_timeout_s)
