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
    # The order's history length orders the events of one transaction (same `time`).
    sequence = await conn.fetchval(
        "SELECT count(*) FROM csdr.order_history WHERE order_id = $1", order_id
    )
    payload = {
        "order": str(order_id),
        "status": status,
        "sequence": sequence,
        "href": order_url(public_url, order_id),
        **data,
    }
    await conn.execute("SELECT csdr.enqueue_org_event($1, $2, $3)", org_id, event_type, payload)
