"""Subscriptions API: create, list, read, replace, delete, pause, resume, test, deliveries,
dead-letter redelivery, and the Atom feed. Every route needs an API key with the `read` scope and
touches only the subscriptions of the key's organisation (administrators: all)."""

import datetime as dt
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field, model_validator

from csdr_push import deliveries, feed, subscriptions
from csdr_push.access import PrincipalDep, check_collections, owner_scope
from csdr_service.pools import PoolDep

router = APIRouter(prefix="/subscriptions", tags=["Subscriptions"])


class WebhookIn(BaseModel):
    """Where to deliver, and the secret deliveries are signed with."""

    url: str = Field(description="http(s) endpoint of the subscriber")
    secret: str = Field(
        description="Standard Webhooks secret: 'whsec_' + base64 of 24 to 64 random bytes",
        json_schema_extra={"writeOnly": True},
    )


class SubscriptionIn(BaseModel):
    """A saved search whose new matches are pushed to a webhook."""

    collections: list[str] | None = Field(None, description="Collections to watch (default all)")
    bbox: list[float] | None = Field(None, description="Area: west, south, east, north (WGS84)")
    intersects: dict[str, Any] | None = Field(None, description="Area: a GeoJSON geometry")
    filter: dict[str, Any] | str | None = Field(
        None, description="CQL2 JSON (or CQL2 text) over item properties, as in STAC search"
    )
    webhook: WebhookIn

    @model_validator(mode="after")
    def _one_area(self) -> "SubscriptionIn":
        if self.bbox is not None and self.intersects is not None:
            raise ValueError("give bbox or intersects, not both")
        return self

    def spec(self) -> subscriptions.Spec:
        """The request as a subscription spec to check."""
        area = (
            {"bbox": self.bbox}
            if self.bbox is not None
            else {"intersects": self.intersects}
            if self.intersects is not None
            else None
        )
        return subscriptions.Spec(
            self.collections, area, self.filter, self.webhook.url, self.webhook.secret
        )


class WebhookOut(BaseModel):
    """The webhook endpoint (the secret is never shown again)."""

    url: str


class Link(BaseModel):
    """A related resource."""

    rel: str
    href: str
    type: str | None = None


class Subscription(BaseModel):
    """A subscription as stored."""

    id: uuid.UUID
    owner: str | None = Field(
        None,
        description="Organisation that owns it: that of the key that created it (none for"
        " subscriptions made before access control)",
    )
    collections: list[str] | None
    bbox: list[float] | None = None
    intersects: dict[str, Any] | None = None
    filter: dict[str, Any] | None
    webhook: WebhookOut
    status: Literal["active", "paused"]
    paused_reason: str | None
    failing_since: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    links: list[Link]


class SubscriptionList(BaseModel):
    """A page of subscriptions."""

    subscriptions: list[Subscription]


class Delivery(BaseModel):
    """One event for one subscription: its status, attempts and last error."""

    id: uuid.UUID = Field(description="Also the webhook-id header: the idempotency key")
    subscription_id: uuid.UUID
    event_id: int | None
    type: str
    status: Literal["pending", "delivered", "dead", "withheld"] = Field(
        description="`withheld`: not sent, the owner may no longer see the item's collection"
    )
    attempts: int
    next_attempt_at: dt.datetime
    last_attempt_at: dt.datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: dt.datetime
    delivered_at: dt.datetime | None
    dead_at: dt.datetime | None


class DeliveryList(BaseModel):
    """A subscription's latest deliveries."""

    deliveries: list[Delivery]


def _out(row: dict[str, Any], request: Request) -> dict[str, Any]:
    base = str(request.url_for("get_subscription", subscription_id=row["id"]))
    area = row.pop("area") or {}
    return {
        **row,
        **area,
        "webhook": {"url": row["webhook_url"]},
        "links": [
            {"rel": "self", "href": base, "type": "application/json"},
            {"rel": "deliveries", "href": f"{base}/deliveries", "type": "application/json"},
            {"rel": "alternate", "href": f"{base}/feed", "type": feed.MEDIA_TYPE},
        ],
    }


@router.post(
    "", status_code=201, response_model=Subscription, summary="Subscribe to new matching items"
)
async def create_subscription(
    body: SubscriptionIn,
    pool: PoolDep,
    principal: PrincipalDep,
    request: Request,
    response: Response,
) -> dict[str, Any]:
    """Check and store the subscription, owned by the key's organisation; every item committed
    from now on that matches it, in a collection that organisation may see when it is sent, is
    delivered to the webhook."""
    settings = request.app.state.settings
    await check_collections(request, pool, principal, body.collections)
    async with pool.acquire() as conn:
        checked = await subscriptions.check(conn, body.spec(), settings)
        row = await subscriptions.create(conn, checked, owner=principal.org_id)
    out = _out(row, request)
    response.headers["Location"] = out["links"][0]["href"]
    return out


@router.get("", response_model=SubscriptionList, summary="List subscriptions")
async def list_subscriptions(
    pool: PoolDep,
    principal: PrincipalDep,
    request: Request,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    """The organisation's subscriptions (an administrator's: all), oldest first."""
    async with pool.acquire() as conn:
        rows = await subscriptions.list_all(conn, owner_scope(principal), limit, offset)
    return {"subscriptions": [_out(r, request) for r in rows]}


@router.get("/{subscription_id}", response_model=Subscription, summary="A subscription")
async def get_subscription(
    subscription_id: uuid.UUID, pool: PoolDep, principal: PrincipalDep, request: Request
) -> dict[str, Any]:
    """The subscription with its status and, when paused, the reason."""
    async with pool.acquire() as conn:
        row = await subscriptions.get(conn, subscription_id, owner_scope(principal))
    return _out(row, request)


@router.put("/{subscription_id}", response_model=Subscription, summary="Replace a subscription")
async def replace_subscription(
    subscription_id: uuid.UUID,
    body: SubscriptionIn,
    pool: PoolDep,
    principal: PrincipalDep,
    request: Request,
) -> dict[str, Any]:
    """Replace what the subscription asks for; its owner, status and past deliveries stay."""
    scope = owner_scope(principal)
    async with pool.acquire() as conn:
        await subscriptions.get(conn, subscription_id, scope)  # 404 before judging the body
        await check_collections(request, pool, principal, body.collections)
        checked = await subscriptions.check(conn, body.spec(), request.app.state.settings)
        row = await subscriptions.replace(conn, subscription_id, checked, scope)
    return _out(row, request)


@router.delete("/{subscription_id}", status_code=204, summary="Delete a subscription")
async def delete_subscription(
    subscription_id: uuid.UUID, pool: PoolDep, principal: PrincipalDep
) -> Response:
    """Delete the subscription and its deliveries."""
    async with pool.acquire() as conn:
        await subscriptions.delete(conn, subscription_id, owner_scope(principal))
    return Response(status_code=204)


@router.post("/{subscription_id}/pause", response_model=Subscription, summary="Pause deliveries")
async def pause_subscription(
    subscription_id: uuid.UUID, pool: PoolDep, principal: PrincipalDep, request: Request
) -> dict[str, Any]:
    """Stop sending; matches keep being recorded and are sent after resume."""
    async with pool.acquire() as conn:
        row = await subscriptions.pause(
            conn, subscription_id, "paused by request", owner_scope(principal)
        )
    return _out(row, request)


@router.post("/{subscription_id}/resume", response_model=Subscription, summary="Resume deliveries")
async def resume_subscription(
    subscription_id: uuid.UUID, pool: PoolDep, principal: PrincipalDep, request: Request
) -> dict[str, Any]:
    """Send again, starting with what accumulated while paused."""
    async with pool.acquire() as conn:
        row = await subscriptions.resume(conn, subscription_id, owner_scope(principal))
    return _out(row, request)


@router.post(
    "/{subscription_id}/test",
    status_code=202,
    response_model=Delivery,
    summary="Send a test event",
)
async def test_subscription(
    subscription_id: uuid.UUID, pool: PoolDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Queue a signed `org.csdr.test` event; follow it in the deliveries."""
    async with pool.acquire() as conn:
        await subscriptions.get(conn, subscription_id, owner_scope(principal))
        return await deliveries.enqueue_test(conn, subscription_id)


@router.get(
    "/{subscription_id}/deliveries",
    response_model=DeliveryList,
    summary="Deliveries and dead letters",
)
async def list_deliveries(
    subscription_id: uuid.UUID,
    pool: PoolDep,
    principal: PrincipalDep,
    status: Literal["pending", "delivered", "dead", "withheld"] | None = Query(
        None, description="Only these (`dead`: the dead letters)"
    ),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """The latest deliveries, newest first, with attempts and the last error."""
    async with pool.acquire() as conn:
        await subscriptions.get(conn, subscription_id, owner_scope(principal))
        return {"deliveries": await deliveries.list_for(conn, subscription_id, status, limit)}


@router.post(
    "/{subscription_id}/deliveries/{delivery_id}/retry",
    status_code=202,
    response_model=Delivery,
    summary="Redeliver a dead letter",
)
async def retry_delivery(
    subscription_id: uuid.UUID, delivery_id: uuid.UUID, pool: PoolDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Queue a dead letter again with a fresh attempt budget (same webhook-id)."""
    async with pool.acquire() as conn:
        await subscriptions.get(conn, subscription_id, owner_scope(principal))
        return await deliveries.redeliver(conn, subscription_id, delivery_id)


@router.get(
    "/{subscription_id}/feed",
    response_class=Response,
    responses={200: {"content": {feed.MEDIA_TYPE: {}}, "description": "Atom feed"}},
    summary="Atom feed of the latest matching items",
)
async def subscription_feed(
    subscription_id: uuid.UUID, pool: PoolDep, principal: PrincipalDep, request: Request
) -> Response:
    """The latest items this subscription matched whose collection its owner may see now, newest
    first, as Atom. Feed readers that cannot send headers pass the key as `?api_key=`; the links
    in the feed then carry it too."""
    settings = request.app.state.settings
    async with pool.acquire() as conn:
        row = await subscriptions.get(conn, subscription_id, owner_scope(principal))
        matches = await feed.latest_matches(conn, subscription_id, settings.feed_size)
    document = feed.render(
        row, matches, str(request.url), settings, request.query_params.get("api_key")
    )
    return Response(document, media_type=feed.MEDIA_TYPE)
