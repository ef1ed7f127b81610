"""Subscriptions: saved searches (collections, area, CQL2 filter) with a webhook, stored in
csdr.subscriptions. Everything a subscription holds is checked here before it is stored."""

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from csdr_push import areas, filters, targets
from csdr_push.errors import InvalidSubscription, SubscriptionNotFound
from csdr_push.settings import Settings

# `owner` is shown by its organisation's name. Queries that take `owner` as a scope match every
# subscription when it is None (administrators), else only that organisation's.
COLUMNS = (
    "id, (SELECT o.name FROM csdr.organisations o WHERE o.id = owner) AS owner, collections,"
    " area, filter, webhook_url, status, paused_reason, failing_since,"
    " created_at, updated_at"
)


@dataclass
class Spec:
    """What a subscriber asks for, before it is checked."""

    collections: list[str] | None
    area: dict[str, Any] | None
    filter: dict[str, Any] | str | None
    webhook_url: str
    webhook_secret: str


@dataclass
class Checked:
    """A spec that passed every check, with what the database evaluates."""

    spec: Spec
    geometry_wkb: bytes | None
    filter_json: dict[str, Any] | None
    filter_where: str | None


async def check(conn: asyncpg.Connection, spec: Spec, settings: Settings) -> Checked:
    """Check every field; raise InvalidSubscription (400) naming the first problem."""
    targets.check_secret(spec.webhook_secret)
    await targets.check_url(spec.webhook_url, settings)
    if spec.collections is not None and not spec.collections:
        raise InvalidSubscription("collections must name at least one collection, or be omitted")
    geometry = None
    if spec.area is not None:
        if "bbox" in spec.area:
            areas.check_bbox(spec.area["bbox"])
        geometry = await areas.to_geometry_wkb(conn, spec.area)
    filter_json = filter_where = None
    if spec.filter is not None:
        filter_json = filters.to_cql2_json(spec.filter)
        filter_where = await filters.compile_where(conn, filter_json)
    return Checked(spec, geometry, filter_json, filter_where)


async def create(conn: asyncpg.Connection, checked: Checked, owner: int | None) -> dict[str, Any]:
    """Store a checked subscription owned by organisation `owner`; return it."""
    s = checked.spec
    row = await conn.fetchrow(
        "INSERT INTO csdr.subscriptions (owner, collections, area, geometry, filter, filter_where,"
        " webhook_url, webhook_secret)"
        " VALUES ($1, $2, $3, ST_GeomFromEWKB($4), $5, $6, $7, $8)"
        f" RETURNING {COLUMNS}",
        owner,
        s.collections,
        s.area,
        checked.geometry_wkb,
        checked.filter_json,
        checked.filter_where,
        s.webhook_url,
        s.webhook_secret,
    )
    assert row is not None
    return dict(row)


async def replace(
    conn: asyncpg.Connection, subscription_id: uuid.UUID, checked: Checked, owner: int | None
) -> dict[str, Any]:
    """Replace what a subscription asks for; its status and deliveries stay."""
    s = checked.spec
    row = await conn.fetchrow(
        "UPDATE csdr.subscriptions SET collections = $2, area = $3, geometry = ST_GeomFromEWKB($4),"
        " filter = $5, filter_where = $6, webhook_url = $7, webhook_secret = $8,"
        " updated_at = now()"
        f" WHERE id = $1 AND ($9::bigint IS NULL OR owner = $9) RETURNING {COLUMNS}",
        subscription_id,
        s.collections,
        s.area,
        checked.geometry_wkb,
        checked.filter_json,
        checked.filter_where,
        s.webhook_url,
        s.webhook_secret,
        owner,
    )
    return _found(row, subscription_id)


async def get(
    conn: asyncpg.Connection, subscription_id: uuid.UUID, owner: int | None
) -> dict[str, Any]:
    """One subscription; SubscriptionNotFound when there is none for `owner`."""
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM csdr.subscriptions"
        " WHERE id = $1 AND ($2::bigint IS NULL OR owner = $2)",
        subscription_id,
        owner,
    )
    return _found(row, subscription_id)


async def list_all(
    conn: asyncpg.Connection, owner: int | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    """Subscriptions of `owner`, oldest first."""
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM csdr.subscriptions WHERE $1::bigint IS NULL OR owner = $1"
        " ORDER BY created_at, id LIMIT $2 OFFSET $3",
        owner,
        limit,
        offset,
    )
    return [dict(r) for r in rows]


async def delete(conn: asyncpg.Connection, subscription_id: uuid.UUID, owner: int | None) -> None:
    """Delete a subscription and its deliveries."""
    status = await conn.execute(
        "DELETE FROM csdr.subscriptions WHERE id = $1 AND ($2::bigint IS NULL OR owner = $2)",
        subscription_id,
        owner,
    )
    if status == "DELETE 0":
        raise SubscriptionNotFound(f"no subscription {subscription_id}")


async def pause(
    conn: asyncpg.Connection, subscription_id: uuid.UUID, reason: str, owner: int | None
) -> dict[str, Any]:
    """Stop sending; matching deliveries keep accumulating until resume."""
    row = await conn.fetchrow(
        "UPDATE csdr.subscriptions SET status = 'paused', paused_reason = $2, updated_at = now()"
        f" WHERE id = $1 AND ($3::bigint IS NULL OR owner = $3) RETURNING {COLUMNS}",
        subscription_id,
        reason,
        owner,
    )
    return _found(row, subscription_id)


async def resume(
    conn: asyncpg.Connection, subscription_id: uuid.UUID, owner: int | None
) -> dict[str, Any]:
    """Send again: pending deliveries are due now and the failure clock starts over."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "UPDATE csdr.subscriptions SET status = 'active', paused_reason = NULL,"
            " failing_since = NULL, updated_at = now()"
            f" WHERE id = $1 AND ($2::bigint IS NULL OR owner = $2) RETURNING {COLUMNS}",
            subscription_id,
            owner,
        )
        if row is None:
            raise SubscriptionNotFound(f"no subscription {subscription_id}")
        await conn.execute(
            "UPDATE csdr.deliveries SET next_attempt_at = now()"
            " WHERE subscription_id = $1 AND status = 'pending'",
            subscription_id,
        )
        await conn.execute("NOTIFY csdr_deliveries")
    return _found(row, subscription_id)


def _found(row: asyncpg.Record | None, subscription_id: uuid.UUID) -> dict[str, Any]:
    if row is None:
        raise SubscriptionNotFound(f"no subscription {subscription_id}")
    return dict(row)
