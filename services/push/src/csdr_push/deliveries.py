"""Deliveries (csdr.deliveries): one per matching (subscription, event), claimed by workers with
FOR UPDATE SKIP LOCKED, retried with exponential backoff and jitter, dead-lettered after
max_attempts, or withheld when, at the moment it would be sent, the subscription's owner may no
longer see the item's collection. A claim pushes next_attempt_at one lease ahead: a worker that
dies mid-delivery leaves the delivery to be claimed again, and the receiver sees the same
webhook-id twice. Delivered and dead ones go after the retention (`prune`)."""

import random
import uuid
from datetime import timedelta
from typing import Any

import asyncpg

from csdr_push.errors import PushError, SubscriptionNotFound
from csdr_push.settings import Settings

COLUMNS = (
    "id, subscription_id, event_id, type, status, attempts, next_attempt_at, last_attempt_at,"
    " last_status_code, last_error, created_at, delivered_at, dead_at"
)
TEST_EVENT = "org.csdr.test"
WITHHELD = "withheld: the subscription's owner may no longer see this item's collection"


class DeliveryNotFound(PushError):
    """No such delivery for that subscription, or it is not a dead letter."""

    code = "NotFound"
    status = 404


def backoff_s(attempts: int, settings: Settings) -> float:
    """Delay before the next attempt: base * 2^(attempts-1) capped, with equal jitter so that
    deliveries that failed together do not retry together."""
    delay = min(settings.backoff_max_s, settings.backoff_base_s * 2 ** max(attempts - 1, 0))
    return delay / 2 + random.uniform(0, delay / 2)


async def list_for(
    conn: asyncpg.Connection, subscription_id: uuid.UUID, status: str | None, limit: int
) -> list[dict[str, Any]]:
    """A subscription's latest deliveries, optionally only those with `status`."""
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM csdr.deliveries WHERE subscription_id = $1"
        " AND ($2::text IS NULL OR status = $2) ORDER BY created_at DESC, id LIMIT $3",
        subscription_id,
        status,
        limit,
    )
    return [dict(r) for r in rows]


async def enqueue_test(conn: asyncpg.Connection, subscription_id: uuid.UUID) -> dict[str, Any]:
    """Queue a test event for a subscription; the worker sends it like any delivery."""
    try:
        row = await conn.fetchrow(
            "WITH d AS (INSERT INTO csdr.deliveries (subscription_id, type, payload)"
            " VALUES ($1, $2, $3) RETURNING *) "
            f"SELECT {COLUMNS} FROM d",
            subscription_id,
            TEST_EVENT,
            {"message": "test event from a CSDR node", "subscription": str(subscription_id)},
        )
    except asyncpg.ForeignKeyViolationError:
        raise SubscriptionNotFound(f"no subscription {subscription_id}") from None
    await conn.execute("NOTIFY csdr_deliveries")
    assert row is not None
    return dict(row)


async def redeliver(
    conn: asyncpg.Connection, subscription_id: uuid.UUID, delivery_id: uuid.UUID
) -> dict[str, Any]:
    """Queue a dead letter again with a fresh attempt budget."""
    row = await conn.fetchrow(
        "UPDATE csdr.deliveries SET status = 'pending', attempts = 0, dead_at = NULL,"
        " next_attempt_at = now() WHERE id = $1 AND subscription_id = $2 AND status = 'dead'"
        f" RETURNING {COLUMNS}",
        delivery_id,
        subscription_id,
    )
    if row is None:
        raise DeliveryNotFound(f"subscription {subscription_id} has no dead letter {delivery_id}")
    await conn.execute("NOTIFY csdr_deliveries")
    return dict(row)


async def claim(pool: asyncpg.Pool, limit: int, lease_s: float) -> list[asyncpg.Record]:
    """Claim up to `limit` due deliveries of active subscriptions, with what sending needs.

    Access is judged now, at delivery time: a delivery whose owner may no longer see the item's
    collection (its policy changed since the match) becomes `withheld` instead of being claimed,
    and is not returned."""
    return await pool.fetch(
        # Walks deliveries_due in order and looks each delivery's subscription up by its key (a
        # scalar subquery, so the plan does not depend on statistics: on a table that just grew
        # from empty, a join was planned as a nested loop over every subscription, 250 ms for 16
        # deliveries). Access is judged once per distinct (owner, collection) among the claimed.
        "WITH due AS ("
        "  SELECT d.id, d.event_id, d.subscription_id FROM csdr.deliveries d"
        "  WHERE d.status = 'pending' AND d.next_attempt_at <= now()"
        "   AND (SELECT s.status FROM csdr.subscriptions s WHERE s.id = d.subscription_id)"
        "    = 'active'"
        "  ORDER BY d.next_attempt_at LIMIT $1 FOR UPDATE OF d SKIP LOCKED),"
        " seen AS ("
        "  SELECT due.id, s.owner, e.collection FROM due"
        "  JOIN csdr.subscriptions s ON s.id = due.subscription_id"
        "  LEFT JOIN csdr.item_events e ON e.id = due.event_id),"
        " verdicts AS MATERIALIZED ("
        "  SELECT owner, collection, csdr.owner_may_see(owner, collection) AS allowed"
        "  FROM (SELECT DISTINCT owner, collection FROM seen WHERE collection IS NOT NULL) p),"
        " judged AS ("
        "  SELECT seen.id, (seen.collection IS NULL OR coalesce(v.allowed, false)) AS allowed"
        "  FROM seen LEFT JOIN verdicts v"
        "   ON v.owner IS NOT DISTINCT FROM seen.owner AND v.collection = seen.collection),"
        " claimed AS ("
        "  UPDATE csdr.deliveries d SET"
        "   status = CASE WHEN j.allowed THEN d.status ELSE 'withheld' END,"
        "   attempts = CASE WHEN j.allowed THEN d.attempts + 1 ELSE d.attempts END,"
        "   last_attempt_at = CASE WHEN j.allowed THEN now() ELSE d.last_attempt_at END,"
        "   last_error = CASE WHEN j.allowed THEN d.last_error ELSE $3 END,"
        "   next_attempt_at = now() + $2::interval"
        "  FROM judged j WHERE d.id = j.id"
        "  RETURNING d.*, j.allowed)"
        " SELECT c.id, c.subscription_id, c.type, c.attempts, c.payload, c.created_at,"
        "  s.webhook_url, s.webhook_secret, e.item, e.collection, e.item_id,"
        "  e.created_at AS event_time"
        " FROM claimed c JOIN csdr.subscriptions s ON s.id = c.subscription_id"
        "  LEFT JOIN csdr.item_events e ON e.id = c.event_id"
        " WHERE c.allowed",
        limit,
        timedelta(seconds=lease_s),
        WITHHELD,
    )


async def next_due_in_s(pool: asyncpg.Pool) -> float | None:
    """Seconds until the next pending delivery of an active subscription is due (None: none)."""
    value = await pool.fetchval(
        # The subscription looked up by key, as in claim().
        "SELECT extract(epoch FROM min(d.next_attempt_at) - now()) FROM csdr.deliveries d"
        " WHERE d.status = 'pending'"
        "  AND (SELECT s.status FROM csdr.subscriptions s WHERE s.id = d.subscription_id)"
        "   = 'active'"
    )
    return None if value is None else float(value)


async def record_successes(pool: asyncpg.Pool, sent: list[tuple[uuid.UUID, int, int]]) -> None:
    """Mark deliveries delivered, given (id, attempts, status code) for each, in one statement
    (where this worker's claim still holds); clear their subscriptions' failure clocks."""
    ids, attempts, status_codes = (list(column) for column in zip(*sent, strict=True))
    await pool.execute(
        "WITH sent AS ("
        "  SELECT * FROM unnest($1::uuid[], $2::int[], $3::int[]) AS t(id, attempts, status_code)),"
        " d AS (UPDATE csdr.deliveries d SET status = 'delivered', delivered_at = now(),"
        "  last_status_code = sent.status_code, last_error = NULL FROM sent"
        "  WHERE d.id = sent.id AND d.attempts = sent.attempts AND d.status = 'pending'"
        "  RETURNING d.subscription_id)"
        " UPDATE csdr.subscriptions s SET failing_since = NULL"
        " WHERE s.id IN (SELECT subscription_id FROM d) AND s.failing_since IS NOT NULL",
        ids,
        attempts,
        status_codes,
    )


async def record_failure(
    pool: asyncpg.Pool,
    delivery_id: uuid.UUID,
    attempts: int,
    status_code: int | None,
    error: str,
    settings: Settings,
) -> str | None:
    """Schedule a retry, or dead-letter the delivery after max_attempts; pause a subscription
    whose endpoint has failed for pause_after_failing_s. Returns the delivery's new status."""
    row = await pool.fetchrow(
        "WITH d AS (UPDATE csdr.deliveries SET"
        "  status = CASE WHEN attempts >= $4 THEN 'dead' ELSE 'pending' END,"
        "  dead_at = CASE WHEN attempts >= $4 THEN now() END,"
        "  next_attempt_at = now() + $5::interval, last_status_code = $3, last_error = $6"
        "  WHERE id = $1 AND attempts = $2 AND status = 'pending'"
        "  RETURNING subscription_id, status),"
        " s AS (UPDATE csdr.subscriptions s SET failing_since = COALESCE(s.failing_since, now()),"
        "  status = CASE WHEN now() - s.failing_since > $7::interval THEN 'paused'"
        "   ELSE s.status END,"
        "  paused_reason = CASE WHEN now() - s.failing_since > $7::interval AND s.status = 'active'"
        "   THEN format('endpoint failing since %s; last error: %s', s.failing_since, $6)"
        "   ELSE s.paused_reason END"
        "  FROM d WHERE s.id = d.subscription_id)"
        " SELECT status FROM d",
        delivery_id,
        attempts,
        status_code,
        settings.max_attempts,
        timedelta(seconds=backoff_s(attempts, settings)),
        error,
        timedelta(seconds=settings.pause_after_failing_s),
    )
    return None if row is None else str(row["status"])


async def prune(pool: asyncpg.Pool, keep: timedelta) -> int:
    """Remove delivered and dead deliveries older than `keep` (csdr.prune_deliveries, 0027)."""
    return int(await pool.fetchval("SELECT csdr.prune_deliveries($1)", keep))
