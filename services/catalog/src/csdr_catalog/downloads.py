"""Asset downloads: `GET /collections/{c}/items/{i}/assets/{key}` serves an asset's file, and the
items the API hands back point their local assets at that route.

Ingest writes asset hrefs as absolute paths in the node's asset store (DESIGN.md): useful to the
tiler, which reads them on this machine, useless to a client elsewhere. Publishing them as
download URLs under `/collections/{c}/...` puts them behind the same access rule as the item
(the access middleware answers 404 for an invisible collection before this route runs), with byte
ranges, so GDAL reads a COG through it as through any HTTP server (`/vsicurl/`).

Only files inside the configured asset roots are served: an item written through the
transactions API may name any path, and `/etc/passwd` is not an asset. Remote hrefs (`https://`,
`s3://`) are left as they are.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from stac_fastapi.types.errors import NotFoundError

router = APIRouter(tags=["Downloads"])


class AssetRoots:
    """The directories whose files may be downloaded as assets."""

    def __init__(self, roots: Iterable[str]) -> None:
        self.roots = tuple(os.path.join(os.path.realpath(r), "") for r in roots if r)

    def publishes(self, href: str) -> bool:
        """Whether `href` names a file under a root (by its text: cheap, for every item)."""
        return href.startswith(self.roots) and "/../" not in href

    def resolve(self, href: str) -> str | None:
        """The real path of `href` when it is an existing file under a root, else None."""
        if not self.publishes(href):
            return None
        path = os.path.realpath(href)  # a symlink or `..` may not lead out of the roots
        return path if path.startswith(self.roots) and os.path.isfile(path) else None


def download_url(base_url: str, collection_id: str, item_id: str, asset_key: str) -> str:
    """The URL of an asset's download route."""
    parts = (quote(collection_id, safe=""), quote(item_id, safe=""), quote(asset_key, safe=""))
    return f"{base_url}collections/{parts[0]}/items/{parts[1]}/assets/{parts[2]}"


def publish_assets(item: dict[str, Any], base_url: str, roots: AssetRoots) -> None:
    """Point the item's local assets at their download URLs, in place."""
    assets = item.get("assets")
    collection_id, item_id = item.get("collection"), item.get("id")
    if not isinstance(assets, dict) or not collection_id or not item_id:
        return  # a Fields response without assets or ids has nothing to point
    for key, asset in assets.items():
        href = asset.get("href") if isinstance(asset, dict) else None
        if isinstance(href, str) and roots.publishes(href):
            asset["href"] = download_url(base_url, collection_id, item_id, key)


def _asset(item: Mapping[str, Any] | None, item_id: str, asset_key: str) -> Mapping[str, Any]:
    if item is None:
        raise NotFoundError(f"Item {item_id} does not exist.")
    asset = (item.get("assets") or {}).get(asset_key)
    if not isinstance(asset, Mapping) or not isinstance(asset.get("href"), str):
        raise NotFoundError(f"Item {item_id} has no asset {asset_key}.")
    return asset


DOWNLOAD_PATH = "/collections/{collection_id}/items/{item_id}/assets/{asset_key}"


@router.get(
    DOWNLOAD_PATH,
    response_class=FileResponse,
    summary="Download an asset",
    responses={200: {"description": "The asset's file (byte ranges supported)"}},
)
async def download_asset(
    collection_id: str, item_id: str, asset_key: str, request: Request
) -> FileResponse:
    """The asset's file, with byte ranges; 404 when the item, the asset or its file is not here."""
    async with request.app.state.get_connection(request, "r") as conn:
        item = await conn.fetchval("SELECT pgstac.get_item($1, $2)", item_id, collection_id)
    asset = _asset(item, item_id, asset_key)
    roots: AssetRoots = request.app.state.asset_roots
    path = roots.resolve(asset["href"])
    if path is None:
        # Neither the path nor whether it exists is told: it is the node's business.
        raise NotFoundError(f"Asset {asset_key} of item {item_id} is not downloadable here.")
    return FileResponse(
        path,
        media_type=asset.get("type") or "application/octet-stream",
        filename=os.path.basename(path),
        content_disposition_type="inline",
    )


# HEAD as its own route: one route with two methods gets one OpenAPI operation id twice.
router.add_api_route(DOWNLOAD_PATH, download_asset, methods=["HEAD"], include_in_schema=False)
