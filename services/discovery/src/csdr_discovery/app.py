"""The discovery application: the node's collections for catalogue harvesters, CSW 2.0.2 at
`/csw`, OAI-PMH at `/oai` and CEOS OpenSearch at `/opensearch`, read live from pgSTAC (granules
from the STAC API's item search).

Run with `uvicorn csdr_discovery.app:create_app --factory`.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from csdr_access import AccessControl
from csdr_discovery import csw, health, iso19139, oai, opensearch
from csdr_discovery.settings import Settings
from csdr_discovery.stac_api import StacApiClient
from csdr_service import pools
from csdr_service.errors import add_exception_handlers
from csdr_service.guards import add_guards
from csdr_service.logs import configure_logging
from csdr_service.metrics import metrics_of
from csdr_service.openapi import complete_openapi


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the discovery API; the pool opens in the lifespan."""
    settings = settings or Settings()
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await pools.open_pool(8, "csdr-discovery", pgstac=True)
        app.state.stac_api = StacApiClient(
            settings.catalog_api_url or settings.catalog_url,
            settings.catalog_url,
            settings.catalog_timeout_s,
        )
        try:
            yield
        finally:
            await app.state.stac_api.aclose()
            await app.state.pool.close()

    app = FastAPI(
        title="CSDR Node discovery",
        description=(
            "The node's collections for catalogue harvesters (GEOSS, CEOS): CSW 2.0.2 with "
            "ISO 19139 records, OAI-PMH with deleted records and CEOS OpenSearch (collections, "
            "then granules), read live from pgSTAC and limited to what an anonymous caller "
            "may see."
        ),
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.access = AccessControl(ttl_s=settings.access_ttl_s)
    app.state.iso = iso19139.IsoRecords(settings)
    add_exception_handlers(app, "discovery")
    add_guards(app, settings.request_timeout_s, settings.max_body_bytes)
    metrics_of(app).watch_pools(lambda: {"primary": getattr(app.state, "pool", None)})
    app.include_router(csw.router)
    app.include_router(oai.router)
    app.include_router(opensearch.router)
    app.include_router(health.router)
    complete_openapi(app)
    return app
