"""Asset downloads: `GET /collections/{c}/items/{i}/assets/{key}` serves an asset's file, and the
items the API hands back point their local assets at that route.

Ingest writes asset hrefs as absolute paths in the node's asset store (DESIGN.md): useful to the
tiler, which reads them on this machine, useless to a client elsewhere. Publishing them as
download URLs under `/collections/{c}/...` puts them behind the same access rule as the item
(the access middleware answers 404 for an invisible collection before this route runs), with byte
ranges, so GDAL reads a COG through it as through any HTTP server (`/vsicurl/`).

Only files inside the configured asset roots are served: an item written through the
transactions API may name any path, and `/etc/passwd` is not an asset. Objects of the node's
bucket (`CSDR_INGEST_ASSETS_URL=s3://...`, csdr_storage) are answered with a short-lived
presigned redirect (307) to the object, which GDAL follows and reads with byte ranges; other
remote hrefs (`https://`, other buckets) are left as they are, except those of a lazily mirrored
scene (a peer registered `--assets lazy`, csdr_storage.lazy): they are published as this route
too, which passes the origin's bytes through with the key the peer issued to this node until the
copy is done (then the route serves the copy, under the same URL); a GET of it is the asset's use
that queues its copy, a HEAD is none.

A GET of a full-resolution asset by an organisation is judged by the quota rule
(csdr_access.charging), the same the orders service applies: the scene's first download in the
period takes one scene of the organisation's quota unless it holds the scene already; with none
left the answer is 403 `QuotaExceeded` with the numbers, as for an order.

Deleting an item through the transactions API removes its files from the store (those in its
own folder, `<collection>/<item>/`, the only ones ingest writes for it); deleting a collection
removes its folder `<collection>/`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import (
    FileResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from stac_fastapi.types.errors import NotFoundError
from starlette.background import BackgroundTask

from csdr_access import charging
from csdr_access.quotas import default_scenes
from csdr_catalog.access import principal_of
from csdr_storage.lazy import (
    KEY_SQL_ASYNCPG,
    LAZY_COPIES_SQL,
    LAZY_PEERS_SQL,
    USE_SQL_ASYNCPG,
    FirstUses,
)
from csdr_storage.store import LocalStore, S3Store, in_item_folder

logger = logging.getLogger(__name__)

# What a request passed through to a lazily mirrored asset's origin takes along, and what of the
# origin's answer comes back (byte ranges and revalidation work through the route as at origin).
PASSED_REQUEST_HEADERS = ("range", "if-range", "if-none-match", "if-modified-since")
PASSED_RESPONSE_HEADERS = (
    "content-type", "content-length", "content-range", "content-encoding", "accept-ranges",
    "etag", "last-modified",
)  # fmt: skip
ORIGIN_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
RETRY_AFTER_S = 30

router = APIRouter(tags=["Downloads"])


class AssetRoots:
    """The directories whose files may be downloaded as assets, and the node's bucket."""

    def __init__(
        self,
        roots: Iterable[str],
        bucket: S3Store | None = None,
        url_ttl_s: int = 300,
        public_endpoint: str | None = None,
    ) -> None:
        self.roots = tuple(os.path.join(os.path.realpath(r), "") for r in roots if r)
        self.bucket = bucket
        self.url_ttl_s = url_ttl_s
        self.public_endpoint = public_endpoint
        self.lazy = FirstUses()
        """Lazy peers' STAC APIs: their scenes' hrefs are published as this node's route."""

    def publishes(self, href: str) -> bool:
        """Whether `href` names a file under a root or an object of the bucket (by its text:
        cheap, for every item)."""
        if self.bucket is not None and href.startswith(self.bucket.url):
            return self.bucket.key_of(href) is not None
        return href.startswith(self.roots) and "/../" not in href

    def presigned(self, href: str) -> str | None:
        """A short-lived URL of the bucket's object `href`, else None."""
        key = self.bucket.key_of(href) if self.bucket is not None else None
        if key is None or self.bucket is None:
            return None
        return self.bucket.presigned_url(key, self.url_ttl_s, self.public_endpoint)

    def stores(self) -> list[LocalStore | S3Store]:
        """The local roots and the bucket as stores."""
        found: list[LocalStore | S3Store] = [LocalStore(Path(r)) for r in self.roots]
        return [*found, self.bucket] if self.bucket is not None else found

    def remove_collection(self, collection_id: str) -> None:
        """Delete the files of a deleted collection: its folder `<collection>/`."""
        for store in self.stores():
            store.delete_folder(collection_id)

    def remove(self, collection_id: str, item_id: str, hrefs: Iterable[str]) -> int:
        """Delete the files of a deleted item (only those in its own folder); return how many."""
        count = 0
        for store in self.stores():
            keys = [
                key
                for href in hrefs
                if (key := store.key_of(href)) is not None
                and in_item_folder(key, collection_id, item_id)
            ]
            store.delete(keys)
            count += len(keys)
        return count

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
        if isinstance(href, str) and (roots.publishes(href) or roots.lazy.candidate(href)):
            asset["href"] = download_url(base_url, collection_id, item_id, key)


async def refresh_lazy_peers(app: FastAPI) -> int:
    """Read the lazy peers' STAC APIs again (csdr_storage.lazy); 1 when they changed."""
    rows = await app.state.readpool.fetch(LAZY_PEERS_SQL)
    folders = await app.state.readpool.fetch(LAZY_COPIES_SQL)
    lazy: FirstUses = app.state.asset_roots.lazy
    return int(lazy.set_peers(row[0] for row in rows) | lazy.set_copies(r[0] for r in folders))


def _asset(item: Mapping[str, Any] | None, item_id: str, asset_key: str) -> Mapping[str, Any]:
    if item is None:
        raise NotFoundError(f"Item {item_id} does not exist.")
    asset = (item.get("assets") or {}).get(asset_key)
    if not isinstance(asset, Mapping) or not isinstance(asset.get("href"), str):
        raise NotFoundError(f"Item {item_id} has no asset {asset_key}.")
    return asset


DOWNLOAD_PATH = "/collections/{collection_id}/items/{item_id}/assets/{asset_key}"


def asset_hrefs(item: Mapping[str, Any] | None) -> list[str]:
    """The hrefs of an item's assets."""
    assets = (item or {}).get("assets") or {}
    return [a["href"] for a in assets.values() if isinstance(a, Mapping) and "href" in a]


async def _charge(
    request: Request, item: Mapping[str, Any], asset: Mapping[str, Any]
) -> Response | None:
    """Charge the organisation's quota for a full-resolution download (csdr_access.charging);
    the 403 problem when the scene does not fit, else None."""
    principal = principal_of(request)
    if not (charging.charges_downloads(principal) and charging.full_resolution(asset)):
        return None
    assert principal.org_id is not None
    state = request.app.state
    pool = getattr(state, "writepool", None) or state.readpool  # the primary
    scene = charging.Download.of(principal.org_id, item)
    try:
        async with pool.acquire() as conn:
            await charging.charge_download(conn, scene, state.clock(), default_scenes())
    except charging.OverQuota as exc:
        body = {"code": "QuotaExceeded", "description": str(exc), **exc.fields}
        return JSONResponse(body, status_code=403, headers={"Cache-Control": "no-store"})
    return None


@router.get(
    DOWNLOAD_PATH,
    response_class=FileResponse,
    summary="Download an asset",
    responses={
        200: {"description": "The asset's file (byte ranges supported)"},
        307: {"description": "A short-lived presigned URL of the asset in object storage"},
        403: {"description": "The organisation's quota has no room for this scene"},
    },
)
async def download_asset(
    collection_id: str, item_id: str, asset_key: str, request: Request
) -> Response:
    """The asset's file, with byte ranges, or a redirect to its object in the node's bucket;
    404 when the item, the asset or its file is not here. An organisation's first download of
    a full-resolution asset of a quota-governed collection takes one scene of its quota for the
    period (free when it holds the scene already); 403 with the numbers when none is left."""
    async with request.app.state.get_connection(request, "r") as conn:
        item = await conn.fetchval("SELECT pgstac.get_item($1, $2)", item_id, collection_id)
    asset = _asset(item, item_id, asset_key)
    roots: AssetRoots = request.app.state.asset_roots
    url = roots.presigned(asset["href"])
    path = roots.resolve(asset["href"]) if url is None else None
    lazy = url is None and path is None and roots.lazy.candidate(asset["href"])
    if url is None and path is None and not lazy:
        # Neither the path nor whether it exists is told: it is the node's business.
        raise NotFoundError(f"Asset {asset_key} of item {item_id} is not downloadable here.")
    if request.method == "GET" and (refused := await _charge(request, item, asset)) is not None:
        return refused
    if url is not None:
        # Signed for the caller judged just now: no cache may hand it to anyone else.
        return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
    if path is None:
        return await _from_origin(request, asset["href"])
    if request.method == "GET":
        await _note_copy_use(request, asset["href"])
    return FileResponse(
        path,
        media_type=asset.get("type") or "application/octet-stream",
        filename=os.path.basename(path),
        content_disposition_type="inline",
    )


async def _note_copy_use(request: Request, href: str) -> None:
    """A GET of a lazy copy's file makes it recently used (csdr_storage.lazy), told once per
    href and process now and then; a failure to tell only loses that."""
    state = request.app.state
    if not state.asset_roots.lazy.first(href):
        return
    pool = getattr(state, "writepool", None) or state.readpool
    try:
        await pool.fetchval(USE_SQL_ASYNCPG, href)
    except Exception as exc:
        state.asset_roots.lazy.forget(href)
        logger.warning("catalog: cannot record the use of %s: %r", href, exc)


async def _from_origin(request: Request, href: str) -> Response:
    """A lazily mirrored asset not copied yet, passed through from its origin with the key its
    peer issued to this node; a GET records its use (csdr_storage.lazy). 404 when `href` is no
    mirrored asset's; 503 with Retry-After while the origin cannot answer."""
    state = request.app.state
    pool = getattr(state, "writepool", None) or state.readpool
    sql = USE_SQL_ASYNCPG if request.method == "GET" else KEY_SQL_ASYNCPG
    key = await pool.fetchval(sql, href)
    if key is None:
        raise NotFoundError("This asset is not downloadable here.")
    headers = {"X-API-Key": key}
    headers |= {h: v for h in PASSED_REQUEST_HEADERS if (v := request.headers.get(h))}
    client = httpx.AsyncClient(timeout=ORIGIN_TIMEOUT)
    try:
        upstream = await client.send(
            client.build_request(request.method, href, headers=headers), stream=True
        )
    except httpx.HTTPError as exc:
        await client.aclose()
        raise _origin_unavailable(href) from exc

    async def close() -> None:
        await upstream.aclose()
        await client.aclose()

    if upstream.status_code >= 500 or upstream.status_code in (401, 403, 404):
        await close()
        if upstream.status_code < 500:
            raise NotFoundError("This asset is not downloadable at its origin now.")
        raise _origin_unavailable(href)
    return StreamingResponse(
        upstream.aiter_raw(),
        status_code=upstream.status_code,
        headers={h: v for h in PASSED_RESPONSE_HEADERS if (v := upstream.headers.get(h))},
        background=BackgroundTask(close),
    )


def _origin_unavailable(href: str) -> HTTPException:
    where = httpx.URL(href).netloc.decode()
    return HTTPException(
        503,
        f"the node holding this asset ({where}) cannot be read; retry later",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


# HEAD as its own route: one route with two methods gets one OpenAPI operation id twice.
router.add_api_route(DOWNLOAD_PATH, download_asset, methods=["HEAD"], include_in_schema=False)
