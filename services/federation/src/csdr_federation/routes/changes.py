"""`GET /federation/changes`: the change feed a partner node pulls (see csdr_federation.feed);
`/federation/digest` and `/federation/items`: what a reader reconciles its mirror with."""

import re
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Query, Request, Response

from csdr_access.peers import bbox_of, geometry_of
from csdr_federation.access import PrincipalDep, get_access
from csdr_federation.errors import InvalidParameter
from csdr_federation.feed import Cursor, Feed, Selection
from csdr_service.pools import PoolDep

router = APIRouter(prefix="/federation", tags=["Federation"])
MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def _parameter(parse: Any, name: str, text: str | None) -> Any:
    """`text` read by the peers' selection rule (csdr_access.peers), None when absent; 400
    naming the parameter."""
    if text is None:
        return None
    try:
        return parse(text)
    except ValueError as exc:
        raise InvalidParameter(f"{name}: {exc}") from None


async def get_selection(
    pool: PoolDep,
    collections: Annotated[
        str | None, Query(description="Comma-separated collections to mirror (default all)")
    ] = None,
    bbox: Annotated[str | None, Query(description="Area: west,south,east,north")] = None,
    intersects: Annotated[str | None, Query(description="Area: a GeoJSON geometry")] = None,
    max_cloud: Annotated[
        float | None, Query(ge=0, le=100, description="Highest eo:cloud_cover")
    ] = None,
    since: Annotated[datetime | None, Query(description="Items acquired from this time on")] = None,
) -> Selection:
    """What the reader mirrors, from the query; 400 naming a parameter that makes no sense."""
    if bbox is not None and intersects is not None:
        raise InvalidParameter("give bbox or intersects, not both")
    if since is not None and since.tzinfo is None:
        raise InvalidParameter("since: give a time zone, e.g. 2024-01-01T00:00:00Z")
    selection = Selection(
        collections=frozenset(c for c in collections.split(",") if c) if collections else None,
        bbox=_parameter(bbox_of, "bbox", bbox),
        intersects=_parameter(geometry_of, "intersects", intersects),
        max_cloud=max_cloud,
        since=since,
    )
    if intersects is not None:
        try:
            await pool.fetchval("SELECT st_geomfromgeojson($1)", intersects)
        except asyncpg.PostgresError as exc:
            raise InvalidParameter(f"intersects: not a usable geometry: {exc}") from None
    return selection


SelectionDep = Annotated[Selection, Depends(get_selection)]


@router.get("/changes", summary="What changed on this node after a cursor")
async def changes(
    request: Request,
    pool: PoolDep,
    principal: PrincipalDep,
    selection: SelectionDep,
    after: Annotated[
        str | None, Query(description="The `next` of the previous page; absent: the start")
    ] = None,
    limit: Annotated[int, Query(ge=1, description="Events to read (at most page_max)")] = 500,
) -> Response:
    """A page of changes: each touched item or collection once, as it is now (`upsert` with the
    item inlined, `delete`, `collection`, `collection_delete`), only what the key may see, with
    `next` (the cursor to read on from) and `at_head` (nothing more to read for now). A cursor
    older than the retention answers 410 with `"reconcile": true`."""
    settings = request.app.state.settings
    if limit > settings.page_max:
        raise InvalidParameter(f"limit: at most {settings.page_max}, not {limit}")
    cursor = Cursor.parse(after)
    feed: Feed = request.app.state.feed
    async with pool.acquire() as conn:
        visible = await get_access(request).visible_async(conn, principal, fresh=True)
        page = await feed.page(conn, cursor, limit, visible, selection)
    # Encoded here: a page is a megabyte of items, which FastAPI's own encoding walks slowly.
    return Response(page.encode(), media_type="application/json")


@router.get("/digest", summary="Per collection and month: a count and a digest of the items")
async def digest(
    request: Request, pool: PoolDep, principal: PrincipalDep, selection: SelectionDep
) -> dict[str, Any]:
    """For a reader to reconcile its mirror (after a 410, or now and then): the feed position the
    digests were taken at (`cursor`, to read on from), and for each collection and month
    (`YYYY-MM` of the item's datetime, UTC) of what the key may see and the selection covers, the
    number of items and a SHA-256 over their sorted ids and content hashes."""
    feed: Feed = request.app.state.feed
    async with pool.acquire() as conn:
        visible = await get_access(request).visible_async(conn, principal, fresh=True)
        return await feed.digest(conn, visible, selection)


@router.get("/items", summary="One collection's items of one month, as the feed publishes them")
async def items(
    request: Request,
    pool: PoolDep,
    principal: PrincipalDep,
    selection: SelectionDep,
    collection: Annotated[str, Query(description="The collection")],
    month: Annotated[str, Query(description="YYYY-MM of the items' datetime (UTC)")],
) -> dict[str, Any]:
    """The collection (a `collection` change) and every item of that month the selection covers
    (`upsert` changes), for a reader re-listing a month whose digest differs from its own."""
    if not MONTH.match(month):
        raise InvalidParameter(f"month: {month!r} is not YYYY-MM")
    feed: Feed = request.app.state.feed
    async with pool.acquire() as conn:
        visible = await get_access(request).visible_async(conn, principal, fresh=True)
        return await feed.month(conn, visible, selection, collection, month)
