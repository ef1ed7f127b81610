"""The portal application: the page, `/config.json`, the static application (ES modules,
message files, the vendored MapLibre GL JS) compressed once (csdr_portal.files), and the health
routes.

Run with `uvicorn csdr_portal.app:create_app --factory`.
"""

from fastapi import FastAPI
from starlette.middleware.gzip import GZipMiddleware

from csdr_portal import config, health, page
from csdr_portal.files import CompressedFiles
from csdr_portal.settings import Settings
from csdr_portal.vendor import STATIC_DIR
from csdr_service.errors import add_exception_handlers
from csdr_service.guards import add_guards
from csdr_service.logs import configure_logging
from csdr_service.openapi import complete_openapi


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the portal server (it holds no state and opens no database)."""
    settings = settings or Settings()
    configure_logging(settings.log_level)
    app = FastAPI(
        title="CSDR Node portal",
        description=(
            "The node's web application for finding, viewing, taking and subscribing to "
            "scenes. It talks to the node's public APIs from the browser; this server delivers "
            "the application and tells it where those APIs are."
        ),
        version="0.1.0",
    )
    app.state.settings = settings
    add_exception_handlers(app, "portal")
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    add_guards(app, settings.request_timeout_s, settings.max_body_bytes)
    app.include_router(page.router)
    app.include_router(config.router)
    app.include_router(health.router)
    complete_openapi(app)
    app.mount("/", CompressedFiles(STATIC_DIR), name="static")
    return app
