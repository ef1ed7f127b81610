"""`/orders`: place (or dry-run) an order of scenes by id or by a STAC search, list and read
orders, cancel them, renew their links, and their delivery as a STAC ItemCollection with signed
download links (`/orders/{id}/download/...`, usable without a key until they expire)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import asyncpg
import orjson
from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from csdr_access import AccessControl, InvalidKey, Principal, api_key_from
from csdr_orders import delivery, orders, scenes
from csdr_orders.access import PrincipalDep, get_access, org_of, org_scope
from csdr_orders.errors import InvalidOrder, LinkInvalid
from csdr_service.pools import PoolDep

router = APIRouter(tags=["Orders"])

GEOJSON = "application/geo+json"


class ItemRef(BaseModel):
    """One scene: its collection and item id."""

    model_config = ConfigDict(extra="forbid")

    collection: str = Field(min_length=1, max_length=200)
    id: str = Field(min_length=1, max_length=200)


class OrderRequest(BaseModel):
    """What to order: scenes by id, or every scene a STAC item search finds."""

    model_config = ConfigDict(extra="forbid")

    items: list[ItemRef] | None = Field(None, max_length=5000)
    search: dict[str, Any] | None = Field(
        None,
        description=(
            "A STAC item search body (collections, ids, bbox, intersects, datetime, filter,"
            " filter-lang, query); at most max_items scenes may match"
        ),
    )

    @model_validator(mode="after")
    def _one_of(self) -> OrderRequest:
        if (self.items is None) == (self.search is None):
            raise ValueError("give either items or search")
        return self


def _context(request: Request) -> tuple[Any, Any]:
    return request.app.state.settings, request.app.state.clock


@router.post(
    "/orders",
    status_code=201,
    summary="Order scenes (by ids or a search); ?dry_run=true shows what would be charged",
    responses={
        200: {"description": "A replay (same Idempotency-Key), or a dry run"},
        403: {"description": "The order would exceed the quota: nothing was ordered"},
        409: {"description": "The Idempotency-Key was used for another order"},
        429: {"description": "The key's rate limit"},
    },
)
async def place_order(
    request: Request,
    body: OrderRequest,
    pool: PoolDep,
    principal: PrincipalDep,
    dry_run: bool = False,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    """Accept the whole order within the quota, or refuse it whole with 403 and the numbers."""
    settings, clock = _context(request)
    org_id = org_of(principal)
    access: AccessControl = get_access(request)
    visible = await access.visible_async(pool, principal)
    async with pool.acquire() as conn:
        if body.items is not None:
            refs = [(i.collection, i.id) for i in body.items]
        else:
            assert body.search is not None
            refs = await scenes.search_refs(conn, body.search, visible, settings.max_items)
        if not refs:
            raise InvalidOrder("the order names no scene")
        placing = orders.Placing(
            org_id,
            principal.org or "",
            clock(),
            orders.canonical(body.model_dump(exclude_none=True)),
            idempotency_key,
        )
        order, replayed = await orders.place(conn, placing, refs, visible, settings, dry_run)
    if dry_run:
        return _json(order)
    headers = {"Location": order["links"][0]["href"]}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return _json(order, 200 if replayed else 201, headers)


def _json(
    content: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """An answer serialised by orjson (~18 us for an order here; JSONResponse ~105 us)."""
    return Response(orjson.dumps(content), status, headers, media_type="application/json")


@router.get("/orders", summary="The caller's orders, latest first")
async def list_orders(
    request: Request,
    pool: PoolDep,
    principal: PrincipalDep,
    status: Literal["ordered", "pending", "shipping", "succeeded", "partial", "failed", "canceled"]
    | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    awaiting_approval: Annotated[
        bool | None, Query(description="Only orders (not) waiting for an administrator")
    ] = None,
) -> dict[str, Any]:
    """The organisation's orders (an administrator's: everyone's)."""
    settings, _ = _context(request)
    async with pool.acquire() as conn:
        listed = await orders.list_orders(
            conn, org_scope(principal), status, limit, settings, awaiting_approval
        )
    return {"orders": listed}


@router.get("/orders/{order_id}", summary="An order: status, items, history, quota")
async def get_order(
    request: Request, order_id: uuid.UUID, pool: PoolDep, principal: PrincipalDep
) -> dict[str, Any]:
    """The order with each item's status and the append-only history (polling is free)."""
    settings, _ = _context(request)
    async with pool.acquire() as conn:
        return await orders.describe(conn, order_id, org_scope(principal), settings)


@router.post("/orders/{order_id}/cancel", summary="Cancel what is not delivered yet, refunded")
async def cancel_order(
    request: Request, order_id: uuid.UUID, pool: PoolDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Cancel and refund the undelivered items; 409 for a finished order."""
    settings, clock = _context(request)
    await orders.cancel(pool, order_id, org_scope(principal), clock(), settings)
    async with pool.acquire() as conn:
        return await orders.describe(conn, order_id, org_scope(principal), settings)


class Decision(BaseModel):
    """An administrator's note on an approval or a rejection."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=1000)


async def _decide(
    request: Request,
    order_id: uuid.UUID,
    pool: asyncpg.Pool,
    principal: Principal,
    approve: bool,
    body: Decision | None,
) -> dict[str, Any]:
    if not principal.is_admin:
        raise HTTPException(403, "only administrators approve or reject orders")
    settings, clock = _context(request)
    reason = body.reason if body else None
    await orders.decide(pool, order_id, approve, reason, clock(), settings)
    async with pool.acquire() as conn:
        return await orders.describe(conn, order_id, None, settings)


@router.post(
    "/orders/{order_id}/approve",
    summary="Approve an order waiting for approval (administrators)",
)
async def approve_order(
    request: Request,
    order_id: uuid.UUID,
    pool: PoolDep,
    principal: PrincipalDep,
    body: Decision | None = None,
) -> dict[str, Any]:
    """Deliver its online scenes and queue its offline ones; 409 unless it waits for approval."""
    return await _decide(request, order_id, pool, principal, True, body)


@router.post(
    "/orders/{order_id}/reject",
    summary="Reject an order waiting for approval (administrators); refunded",
)
async def reject_order(
    request: Request,
    order_id: uuid.UUID,
    pool: PoolDep,
    principal: PrincipalDep,
    body: Decision | None = None,
) -> dict[str, Any]:
    """Cancel it with `reason_code: rejected` and refund it; 409 unless it waits for approval."""
    return await _decide(request, order_id, pool, principal, False, body)


@router.post("/orders/{order_id}/renew", summary="New delivery links, at no quota cost")
async def renew_links(
    request: Request, order_id: uuid.UUID, pool: PoolDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Links valid for `link_ttl_days` from now."""
    settings, clock = _context(request)
    await orders.renew(pool, order_id, org_scope(principal), clock(), settings)
    async with pool.acquire() as conn:
        return await orders.describe(conn, order_id, org_scope(principal), settings)


@router.get(
    "/orders/{order_id}/items",
    summary="The delivered scenes as a STAC ItemCollection with signed download links",
    response_class=JSONResponse,
)
async def order_items(
    request: Request, order_id: uuid.UUID, pool: PoolDep, principal: PrincipalDep
) -> JSONResponse:
    """Readable by pystac-client (`ItemCollection.from_dict`) and QGIS."""
    settings, _ = _context(request)
    async with pool.acquire() as conn:
        order = await orders.describe(conn, order_id, org_scope(principal), settings)
        org_id = await conn.fetchval("SELECT org_id FROM csdr.orders WHERE id = $1", order_id)
        expires = await conn.fetchval(
            "SELECT links_expire_at FROM csdr.orders WHERE id = $1", order_id
        )
        collection = await delivery.item_collection(
            conn, order, int(org_id), expires, settings, request.app.state.signer
        )
    return JSONResponse(collection, media_type=GEOJSON)


@router.get(
    "/orders/{order_id}/download/{collection}/{item_id}/{asset}",
    summary="A delivered file, by its signed link (403 forged, 410 expired)",
    response_class=FileResponse,
    responses={410: {"description": "The link expired: renew the order's links"}},
)
async def download(
    request: Request,
    order_id: uuid.UUID,
    collection: str,
    item_id: str,
    asset: str,
    pool: PoolDep,
    org: Annotated[int, Query(ge=1, le=2**63 - 1)],
    expires: Annotated[int, Query(ge=0, le=253402300799, description="Seconds since 1970")],
    signature: Annotated[str, Query(max_length=128)],
) -> FileResponse:
    """Serve the file; a key, when sent, must be of the organisation the link was signed for."""
    settings, clock = _context(request)
    caller_org = None
    if key := api_key_from(request.headers, {}):
        client = request.client.host if request.client else None
        try:
            principal = await get_access(request).principal_async(pool, key, client)
        except InvalidKey as exc:
            raise LinkInvalid(str(exc)) from None
        caller_org = None if principal.is_admin else principal.org_id
    link = delivery.Link(order_id, org, collection, item_id, asset, expires)
    delivery.check(link, signature, request.app.state.signer, clock(), caller_org)
    async with pool.acquire() as conn:
        path = await delivery.file_for(conn, link, request.app.state.roots, clock())
    return FileResponse(path, filename=path.rsplit("/", 1)[-1])
