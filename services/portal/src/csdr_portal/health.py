"""Readiness of the portal: it has no database; it is ready when the page and the vendored map
library are in place, the library's files matching the checksums recorded when they were copied."""

from fastapi import Request

from csdr_portal.vendor import STATIC_DIR, verified
from csdr_service.health import health_router


async def _files(request: Request) -> dict[str, str]:
    if not (STATIC_DIR / "index.html").is_file():
        raise FileNotFoundError(STATIC_DIR / "index.html")
    vendored = verified()
    return {vendored.package: vendored.version}


router = health_router(_files, lambda r: r.app.state.settings.readiness_timeout_s)
