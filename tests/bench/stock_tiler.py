"""The stock titiler-pgstac application, for `tests/e2e/processes.service`, which runs factories.

`uvicorn tests.bench.stock_tiler:create_app --factory` serves the very object that
`uvicorn titiler.pgstac.main:app` serves; importing it here, inside the server process, keeps its
import-time settings reading the PG* variables the process was started with.
"""

from fastapi import FastAPI


def create_app() -> FastAPI:
    """Return titiler-pgstac's import-time app unchanged."""
    from titiler.pgstac.main import app

    return app
