"""The catalog application: stac-fastapi-pgstac's StacApi with our settings and health routes.

Run with `uvicorn csdr_catalog.app:create_app --factory`.
"""

import logging

from fastapi import FastAPI
from stac_fastapi.pgstac.app import instantiate_api
from stac_fastapi.pgstac.models.extensions import Extensions

from csdr_catalog import health
from csdr_catalog.settings import Settings

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the STAC API; the database pools open in the lifespan, not here."""
    settings = settings or Settings()
    stac_settings = settings.stac_settings()
    api = instantiate_api(extensions=Extensions(settings=stac_settings), settings=stac_settings)
    app = api.app
    app.state.csdr_settings = settings
    app.include_router(health.router)
    return app
