"""The discovery application: the node's collections for catalogue harvesters, CSW 2.0.2 at
`/csw` and OAI-PMH at `/oai`, read live from pgSTAC.

Run with `uvicorn csdr_discovery.app:create_app --factory`.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from csdr_access import AccessControl
from csdr_discovery import csw, db, health, oai
from csdr_discovery.settings import Settings
from csdr_service.errors import add_exception_handlers
from csdr_service.logs import configure_logging


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the discovery API; the pool opens in the lifespan."""
    settings = settings or Settings()
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await db.open_pool(max_size=8)
        try:
            yield
        finally:
            await app.state.pool.close()

    app = FastAPI(
        title="CSDR Node discovery",
        description=(
            "The node's collections for catalogue harvesters (GEOSS, CEOS): CSW 2.0.2 with "
            "ISO 19139 records and OAI-PMH with deleted records, read live from pgSTAC and "
            "limited to what an anonymous caller may see."
        ),
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.access = AccessControl(ttl_s=settings.access_ttl_s)
    add_exception_handlers(app, "discovery")
    app.include_router(csw.router)
    app.include_router(oai.router)
    app.include_router(health.router)
    return app
