"""`/config.json`: what the browser application needs to know about this node, the public URLs
of the APIs it calls (an empty one: that service is absent and its controls are not shown), the
languages it has message files for, and the map library's version."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from csdr_portal.settings import Settings
from csdr_portal.vendor import STATIC_DIR, record

router = APIRouter(tags=["Portal"])
MESSAGES_DIR = STATIC_DIR / "messages"


class PortalConfig(BaseModel):
    """The node as the browser application sees it."""

    title: str
    catalog: str = Field(description="The STAC API's public base URL")
    tiler: str = Field(description="The tiler's public base URL")
    push: str = Field(description="The push service's public base URL; empty: absent")
    orders: str = Field(description="The orders service's public base URL; empty: absent")
    languages: list[str] = Field(description="Languages with a message file (BCP 47 tags)")
    maplibre: str = Field(description="Version of the vendored MapLibre GL JS")
    mosaic_above: int = Field(
        description="Above this many matches the map draws the result set's mosaics, not"
        " the page's footprints, at low zoom"
    )


def languages() -> list[str]:
    """The languages the portal has a message file for, English first."""
    found = sorted(p.stem for p in MESSAGES_DIR.glob("*.json"))
    return sorted(found, key=lambda tag: tag != "en")


def public_urls(settings: Settings) -> dict[str, str]:
    """The APIs the application calls, without trailing slashes (empty: absent)."""
    return {
        "catalog": settings.catalog_url.rstrip("/"),
        "tiler": settings.tiler_url.rstrip("/"),
        "push": settings.push_url.rstrip("/"),
        "orders": settings.orders_url.rstrip("/"),
    }


@router.get("/config.json", response_model=PortalConfig, summary="The node's public API URLs")
async def portal_config(request: Request) -> PortalConfig:
    """The public URLs of the node's APIs and the languages the application speaks."""
    settings: Settings = request.app.state.settings
    return PortalConfig(
        title=settings.title,
        **public_urls(settings),
        languages=languages(),
        maplibre=record().version,
        mosaic_above=settings.mosaic_above,
    )
