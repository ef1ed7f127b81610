"""The application's page (`/`, `/index.html`) with the Content-Security-Policy that confines
the browser to this server and the node's own APIs: the map library, the messages and every
script come from here, data and tiles from the configured services, nothing from elsewhere."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from csdr_portal.config import public_urls
from csdr_portal.settings import Settings
from csdr_portal.vendor import STATIC_DIR

router = APIRouter(include_in_schema=False)


def content_security_policy(settings: Settings) -> str:
    """The policy: scripts and styles from this server only (MapLibre sets element styles and
    runs its worker from a blob URL), requests and images to this server and the node's APIs."""
    apis = " ".join(url for url in public_urls(settings).values() if url)
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",
            f"connect-src 'self' {apis}",
            f"img-src 'self' data: blob: {apis}",
            "worker-src blob:",
            "child-src blob:",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            "frame-ancestors 'none'",
        ]
    )


@router.get("/")
@router.get("/index.html")
async def index(request: Request) -> FileResponse:
    """The single page; everything else is a static file beside it."""
    settings: Settings = request.app.state.settings
    return FileResponse(
        STATIC_DIR / "index.html",
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": content_security_policy(settings),
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache",
        },
    )
