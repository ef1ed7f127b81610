"""Order progress as CloudEvents to the organisation's webhooks, through push's outbox: each event
becomes a delivery of push (csdr.enqueue_org_event, migration 0019) in the order's own
transaction, and the push worker signs (Standard Webhooks), sends, retries and dead-letters it as
any delivery. The event's data says which order, its status, its place in the order's history
(`sequence`), and the item when one changed."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

ACCEPTED = "org.csdr.order.accepted"
ITEM_SUCCEEDED = "org.csdr.order.item.succeeded"
ITEM_FAILED = "org.csdr.order.item.failed"
COMPLETED = "org.csdr.order.completed"


def order_url(public_url: str, order_id: UUID) -> str:
    """The order in this service's API."""
    return f"{public_url}/orders/{order_id}"


def event(
    public_url: str, order_id: UUID, status: str, sequence: int | None = None, **data: Any
) -> dict[str, Any]:
    """An event's data: which order, its status, the item when one changed."""
    payload: dict[str, Any] = {
        "order": str(order_id),
        "status": status,
        "href": order_url(public_url, order_id),
    }
    if sequence is not None:
        payload["sequence"] = sequence
    return payload | data


async def emit(
    conn: asyncpg.Connection,
    public_url: str,
    org_id: int,
    event_type: str,
    order_id: UUID,
    status: str,
    **data: Any,
) -> None:
    """Queue one event for the organisation's webhooks (none: nothing is queued)."""
    await emit_many(
        conn, org_id, order_id, [(event_type, event(public_url, order_id, status, **data))]
    )


async def emit_many(
    conn: asyncpg.Connection,
    org_id: int,
    order_id: UUID,
    events: list[tuple[str, dict[str, Any]]],
) -> None:
    """Queue several (type, data) events of one order, in one round trip."""
    await conn.executemany(
        "SELECT csdr.enqueue_order_event($1, $2, $3, $4)",
        [(org_id, order_id, event_type, payload) for event_type, payload in events],
    )
