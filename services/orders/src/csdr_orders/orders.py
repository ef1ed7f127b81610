"""The order lifecycle in the database: acceptance (quota judged and reserved in one transaction,
all or nothing), delivery of online scenes at once and of offline ones when their production
ends, refunds on failure and cancellation, and the order as an API answer with its items and
history. Every change of status goes through lifecycle.steps and leaves a history row."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import asyncpg

from csdr_access import charging, ledger
from csdr_access.periods import iso, period_name, period_start
from csdr_orders import events, lifecycle, production, scenes
from csdr_orders.errors import (
    IdempotencyConflict,
    InvalidOrder,
    OrderNotFound,
    QuotaExceeded,
    TransitionRefused,
)
from csdr_orders.scenes import Scene, scenes_online
from csdr_orders.settings import Settings
from csdr_service.errors import run_again_on_conflict_async

IDEMPOTENCY_CONSTRAINT = "orders_org_id_idempotency_key_key"


@dataclass(frozen=True)
class Placing:
    """Who places an order, when, and what they asked for (kept to recognise a replay)."""

    org_id: int
    organisation: str
    at: datetime
    request: dict[str, Any]
    idempotency_key: str | None


def _entry(order: asyncpg.Record, item: asyncpg.Record) -> ledger.Entry:
    return ledger.Entry(
        order["org_id"],
        item["class"],
        order["period_start"],
        item["collection"],
        item["item_id"],
        item["platform"],
        item["instrument"],
        order["id"],
    )


async def _history(
    conn: asyncpg.Connection,
    order_id: uuid.UUID,
    at: datetime,
    status: str,
    code: str | None,
    text: str | None,
    item: tuple[str, str] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO csdr.order_history (order_id, collection, item_id, at, status, reason_code,"
        " reason_text) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        order_id,
        item[0] if item else None,
        item[1] if item else None,
        at,
        status,
        code,
        text,
    )


async def _move(
    conn: asyncpg.Connection,
    order: asyncpg.Record,
    target: str,
    at: datetime,
    code: str,
    text: str,
    settings: Settings,
) -> str:
    """Take the order to `target` through the allowed steps (409 when none lead there)."""
    current = str(order["status"])
    for status in lifecycle.steps(current, target):
        await conn.execute(
            "UPDATE csdr.orders SET status = $2, updated_at = $3 WHERE id = $1",
            order["id"],
            status,
            at,
        )
        await _history(conn, order["id"], at, status, code, text)
        current = status
    if current in lifecycle.TERMINAL and target != order["status"]:
        await events.emit(
            conn, settings.public_url, order["org_id"], events.COMPLETED, order["id"], current
        )
    return current


async def _settle(
    conn: asyncpg.Connection, order_id: uuid.UUID, at: datetime, settings: Settings
) -> str:
    """Bring the order's status in line with its items'."""
    order = await conn.fetchrow("SELECT * FROM csdr.orders WHERE id = $1 FOR UPDATE", order_id)
    assert order is not None
    statuses = [
        r["status"]
        for r in await conn.fetch(
            "SELECT status FROM csdr.order_items WHERE order_id = $1", order_id
        )
    ]
    target = lifecycle.order_status(statuses)
    if target == order["status"] or order["status"] in lifecycle.TERMINAL:
        return str(order["status"])
    reasons = {
        "pending": ("production", "waiting for the production of offline scenes"),
        "shipping": ("delivering", "scenes are being delivered"),
        "succeeded": ("delivered", "every scene was delivered"),
        "partial": ("partial_delivery", "some scenes were delivered, others failed"),
        "failed": ("failed", "no scene could be delivered"),
        "canceled": ("canceled", "every scene was canceled"),
    }
    code, text = reasons[target]
    return await _move(conn, order, target, at, code, text, settings)


AWAITING_APPROVAL = ("awaiting_approval", "waiting for an administrator's approval")
STEP_REASONS = {
    "shipping": ("delivering", "delivery being prepared: charge, links, notice"),
}
"""The reason recorded for a status an item passes through on its way to another."""


async def _item_status(
    conn: asyncpg.Connection,
    order: asyncpg.Record,
    item: asyncpg.Record,
    status: str,
    at: datetime,
    code: str,
    text: str | None,
) -> None:
    """Take the item to `status` through the allowed steps, a history row for each."""
    path = lifecycle.steps(str(item["status"]), status)
    await conn.execute(
        "UPDATE csdr.order_items SET status = $4, reason = $5, updated_at = $6"
        " WHERE order_id = $1 AND collection = $2 AND item_id = $3",
        order["id"],
        item["collection"],
        item["item_id"],
        status,
        text,
        at,
    )
    ref = (item["collection"], item["item_id"])
    for step in path:
        why = (code, text) if step == status else STEP_REASONS[step]
        await _history(conn, order["id"], at, step, *why, ref)


async def _deliver(
    conn: asyncpg.Connection,
    order: asyncpg.Record,
    item: asyncpg.Record,
    at: datetime,
    settings: Settings,
) -> None:
    """The scene is online: the item succeeds, its reservation is committed, and the order's
    links are valid for `link_ttl_days` from now at least."""
    await _item_status(conn, order, item, "succeeded", at, "delivered", None)
    await conn.execute(
        "UPDATE csdr.orders SET links_expire_at = greatest(links_expire_at, $2) WHERE id = $1",
        order["id"],
        at + timedelta(days=settings.link_ttl_days),
    )
    if item["charged"]:
        committed = await conn.fetchval(
            "UPDATE csdr.entitlements SET state = 'committed'"
            " WHERE org_id = $1 AND period_start = $2 AND collection = $3 AND item_id = $4"
            " AND state = 'reserved' RETURNING class",
            order["org_id"],
            order["period_start"],
            item["collection"],
            item["item_id"],
        )
        if committed is not None:
            await charging.change(
                conn, order["org_id"], item["class"], order["period_start"], -1, 1
            )
            await ledger.record(conn, at, "released", [_entry(order, item)])
    await events.emit(
        conn,
        settings.public_url,
        order["org_id"],
        events.ITEM_SUCCEEDED,
        order["id"],
        "succeeded",
        collection=item["collection"],
        item=item["item_id"],
    )


async def _refund(
    conn: asyncpg.Connection,
    order: asyncpg.Record,
    item: asyncpg.Record,
    status: str,
    at: datetime,
    code: str,
    reason: str,
    settings: Settings,
) -> None:
    """The scene will not be delivered by this order: the item fails (or is canceled) and its
    reservation, when it holds one, is refunded."""
    await _item_status(conn, order, item, status, at, code, reason)
    if item["charged"] and await _pass_charge(conn, order, item):
        pass  # another order of the organisation still waits for the scene: it holds the charge
    elif item["charged"]:
        refunded = await conn.fetchval(
            "DELETE FROM csdr.entitlements"
            " WHERE org_id = $1 AND period_start = $2 AND collection = $3 AND item_id = $4"
            " AND state = 'reserved' AND order_id = $5 RETURNING class",
            order["org_id"],
            order["period_start"],
            item["collection"],
            item["item_id"],
            order["id"],
        )
        if refunded is not None:
            await charging.change(conn, order["org_id"], item["class"], order["period_start"], -1)
            await ledger.record(conn, at, "refunded", [_entry(order, item)])
    if status == "failed":
        await events.emit(
            conn,
            settings.public_url,
            order["org_id"],
            events.ITEM_FAILED,
            order["id"],
            "failed",
            collection=item["collection"],
            item=item["item_id"],
            reason=reason,
        )


async def _pass_charge(
    conn: asyncpg.Connection, order: asyncpg.Record, item: asyncpg.Record
) -> bool:
    """Hand the item's charge to the organisation's oldest other order still waiting for the
    same scene this period (it was free because this one held it); False when there is none."""
    heir = await conn.fetchval(
        "SELECT i.order_id FROM csdr.order_items i JOIN csdr.orders o ON o.id = i.order_id"
        " WHERE o.org_id = $1 AND o.period_start = $2 AND i.collection = $3 AND i.item_id = $4"
        " AND i.order_id <> $5 AND NOT i.charged AND i.status = ANY($6::text[])"
        " ORDER BY o.created_at, o.id LIMIT 1 FOR UPDATE OF i",
        order["org_id"],
        order["period_start"],
        item["collection"],
        item["item_id"],
        order["id"],
        list(lifecycle.WAITING),
    )
    if heir is None:
        return False
    await conn.execute(
        "UPDATE csdr.order_items SET charged = (order_id = $4)"
        " WHERE order_id IN ($1, $4) AND collection = $2 AND item_id = $3",
        order["id"],
        item["collection"],
        item["item_id"],
        heir,
    )
    await conn.execute(
        "UPDATE csdr.entitlements SET order_id = $5"
        " WHERE org_id = $1 AND period_start = $2 AND collection = $3 AND item_id = $4",
        order["org_id"],
        order["period_start"],
        item["collection"],
        item["item_id"],
        heir,
    )
    return True


def _replayed(placing: Placing, replay: list[Any] | None) -> uuid.UUID | None:
    """The order an earlier request with the same Idempotency-Key created ([id, request], as
    csdr.order_lookup or REPLAY_SQL read it), if any; IdempotencyConflict when it asked for
    something else."""
    if replay is None:
        return None
    order_id, request = replay
    if request != placing.request:
        raise IdempotencyConflict(
            f"Idempotency-Key {placing.idempotency_key!r} was used for order {order_id}, which"
            " asked for something else; use a new key for a new order",
            order=str(order_id),
        )
    return uuid.UUID(str(order_id))


REPLAY_SQL = (
    "SELECT jsonb_build_array(id, request) FROM csdr.orders"
    " WHERE org_id = $1 AND idempotency_key = $2"
)

# What an order is judged and written on, in one round trip before its acceptance
# (csdr.order_lookup, migration 0047): the scenes it names (as scenes.checked reads them), the
# organisation's terms and standing, and the order an earlier request with the same
# Idempotency-Key created.
LOOKUP_SQL = "SELECT * FROM csdr.order_lookup($1, $2, $3, $4)"


@dataclass(frozen=True)
class Terms:
    """What an order of an organisation is judged and written on, besides the counters."""

    anchor: date | None
    """The agreement's start date its periods run from (None: calendar years)."""
    classes: dict[str, str]
    """The quota class of each collection ordered."""
    hold: bool
    """Manual approval: every scene waits `ordered` for an administrator."""
    subscribed: bool
    """The organisation has webhooks: progress events are queued."""


async def place(
    conn: asyncpg.Connection,
    placing: Placing,
    refs: list[tuple[str, str]],
    visible: frozenset[str],
    settings: Settings,
    dry_run: bool = False,
) -> tuple[dict[str, Any], bool]:
    """Accept an order of the scenes `refs` (collection, id) names in one transaction, or
    refuse it whole (InvalidOrder: a scene the caller cannot order, or too many;
    QuotaExceeded: nothing written). Two round trips: the lookup (LOOKUP_SQL), then the
    acceptance (csdr.accept_order). Returns (the order as `describe` shows it, whether it is a
    replay), or (the dry run's report, False)."""
    refs = scenes.unique(refs)
    row = await conn.fetchrow(
        LOOKUP_SQL,
        [c for c, _ in refs],
        [i for _, i in refs],
        placing.org_id,
        placing.idempotency_key,
    )
    assert row is not None
    found = scenes.checked(refs, row, visible)
    if len(found) > settings.max_items:
        raise InvalidOrder(f"items: at most {settings.max_items} scenes per order")
    if not dry_run and (existing := _replayed(placing, row["replay"])) is not None:
        return await describe(conn, existing, placing.org_id, settings), True
    classes = {c: row["classes"].get(c, charging.DEFAULT_CLASS) for c, _ in refs}
    terms = Terms(row["anchor"], classes, row["hold"], row["subscribed"])
    try:
        accepted = await run_again_on_conflict_async(
            lambda: _accept(conn, placing, terms, found, settings, dry_run),
            f"placing an order for {placing.organisation or placing.org_id}",
        )
        return accepted, False
    except asyncpg.UniqueViolationError as exc:
        # The same key raced this request and committed first: answer with its order.
        if exc.constraint_name != IDEMPOTENCY_CONSTRAINT:
            raise
        replay = await conn.fetchval(REPLAY_SQL, placing.org_id, placing.idempotency_key)
        existing = _replayed(placing, replay)
        assert existing is not None
        return await describe(conn, existing, placing.org_id, settings), True


async def _accept(
    conn: asyncpg.Connection,
    placing: Placing,
    terms: Terms,
    scenes: list[Scene],
    settings: Settings,
    dry_run: bool,
) -> dict[str, Any]:
    """Judge and write the order in one call (csdr.accept_order, migration 0047: the counters
    locked, the holdings read after the locks, csdr.quota_refuses, the writes; one implicit
    transaction). What it writes is planned here; which scenes are charged (those the
    organisation does not hold) it finds under the locks. A refusal's numbers are
    charging.Quota.refusal's, as a dry run's judgement."""
    at, org_id, classes = placing.at, placing.org_id, terms.classes
    period = period_start(at, terms.anchor)
    plan = None if dry_run else _plan(placing, terms, scenes, settings)
    found = await conn.fetchval(
        "SELECT csdr.accept_order($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"
        " $15)",
        org_id,
        period,
        settings.default_quota,
        plan is not None,
        at,
        *(plan.args() if plan else _judging_args(scenes, classes)),
    )
    held = {(c, i): order_id for c, i, order_id in found["held"]}
    charged = [s for s in scenes if (s.collection, s.item_id) not in held]
    snapshots = []
    refusal: dict[str, Any] | None = None
    for quota_class, numbers in sorted(found["counters"].items()):
        used, reserved, limit = (int(n) for n in numbers)
        quota = charging.Quota(
            org_id, placing.organisation, quota_class, period, limit, used, reserved, terms.anchor
        )
        snapshots.append(quota)
        requested = sum(1 for s in charged if classes[s.collection] == quota_class)
        if refusal is None:
            refusal = quota.refusal(requested)
    if plan is None:
        name = period_name(period, terms.anchor)
        return _dry_run_report(placing, name, scenes, held, classes, snapshots, refusal)
    if found["refused"]:
        assert refusal is not None, "csdr.quota_refuses and Quota.refusal disagree"
        text = charging.refusal_text(refusal, "this order")
        raise QuotaExceeded(f"{text}; nothing was ordered", **refusal)
    for item in plan.items:
        item["charged"] = (item["collection"], item["item_id"]) not in held
    snapshot = [
        charging.Quota(org_id, name, c, period, limit, used, reserved, terms.anchor)
        for c, name, limit, used, reserved in found["quota"]
    ]
    return _view(plan.order, placing.organisation, plan.items, plan.history, snapshot, settings)


def _judging_args(scenes: list[Scene], classes: dict[str, str]) -> list[Any]:
    """csdr.accept_order's parameters from $6 on for a dry run: the scenes and their classes
    (judged, nothing written)."""
    items = [
        {"collection": s.collection, "item_id": s.item_id, "class": classes[s.collection]}
        for s in scenes
    ]
    return [None, None, None, {}, None, False, items, [], [], []]


def _acceptance_history(
    scenes: list[Scene], statuses: list[str], hold: bool, final: str
) -> tuple[list[tuple[str, str, str, tuple[str, str] | None]], dict[Scene, int]]:
    """The history of an accepted order as the lifecycle walks it: accepted, each scene's
    steps, then the order's; and each delivered scene's place in it (from 1, the `sequence`
    of its event)."""
    history: list[tuple[str, str, str, tuple[str, str] | None]] = [
        ("ordered", "accepted", f"{len(scenes)} scenes accepted", None)
    ]
    delivered_at: dict[Scene, int] = {}
    for scene, status in zip(scenes, statuses, strict=True):
        ref = (scene.collection, scene.item_id)
        if hold:
            history.append(("ordered", *AWAITING_APPROVAL, ref))
        elif status != "succeeded":
            history.append(("pending", "production", "queued for production", ref))
        else:
            steps = lifecycle.steps("ordered", status)[:-1]
            history += [(step, *STEP_REASONS[step], ref) for step in steps]
            history.append((status, "delivered", "", ref))
            delivered_at[scene] = len(history)
    reasons = {
        "pending": ("production", "waiting for the production of offline scenes"),
        "shipping": ("delivering", "scenes are being delivered"),
        "succeeded": ("delivered", "every scene was delivered"),
    }
    history += [(step, *reasons[step], None) for step in lifecycle.steps("ordered", final)]
    return history, delivered_at


@dataclass(frozen=True)
class Plan:
    """An order as it will be written if it fits: the order, its items (`charged` set once the
    holdings are known) and history as `describe` would read them back, its events and the
    productions it asks for."""

    order: dict[str, Any]
    items: list[dict[str, Any]]
    history: list[dict[str, Any]]
    scenes: list[dict[str, Any]]
    """csdr.accept_order's items: each scene with its class, status, and `now` (delivered at
    acceptance: its charge committed, not reserved)."""
    events: list[tuple[str, dict[str, Any]]]
    produce: list[tuple[str, str]]

    def args(self) -> list[Any]:
        """csdr.accept_order's parameters from $6 on."""
        order = self.order
        history = [
            {k: h[k] for k in ("collection", "item_id", "status", "reason_code", "reason_text")}
            for h in self.history
        ]
        return [
            order["id"],
            order["status"],
            order["idempotency_key"],
            order["request"],
            order["links_expire_at"],
            order["awaiting_approval"],
            self.scenes,
            history,
            self.events,
            self.produce,
        ]


def _plan(placing: Placing, terms: Terms, scenes: list[Scene], settings: Settings) -> Plan:
    """What accepting the order writes: online scenes delivered at once (their charge
    committed), offline ones pending their production (their charge reserved); with `hold`
    (manual approval), every scene `ordered` until an administrator approves, reserved. Events
    only for an organisation with webhooks."""
    at, hold, classes = placing.at, terms.hold, terms.classes
    order_id = uuid.uuid4()
    now = {s: s.online and not hold for s in scenes}
    statuses = ["succeeded" if now[s] else "ordered" if hold else "pending" for s in scenes]
    final = lifecycle.order_status(statuses)
    history, delivered_at = _acceptance_history(scenes, statuses, hold, final)
    order = {
        "id": order_id,
        "status": final,
        "created_at": at,
        "updated_at": at,
        "period_start": period_start(at, terms.anchor),
        "links_expire_at": at + timedelta(days=settings.link_ttl_days),
        "awaiting_approval": hold,
        "request": placing.request,
        "idempotency_key": placing.idempotency_key,
    }
    items = [
        {
            "collection": s.collection,
            "item_id": s.item_id,
            "class": classes[s.collection],
            "status": status,
            "charged": True,
            "reason": None,
            "updated_at": at,
        }
        for s, status in zip(scenes, statuses, strict=True)
    ]
    rows = [
        {
            "at": at,
            "status": st,
            "collection": i[0] if i else None,
            "item_id": i[1] if i else None,
            "reason_code": code,
            "reason_text": text or None,
        }
        for st, code, text, i in history
    ]
    written = [
        {
            "collection": s.collection,
            "item_id": s.item_id,
            "class": classes[s.collection],
            "platform": s.platform,
            "instrument": s.instrument,
            "status": status,
            "now": now[s],
        }
        for s, status in zip(scenes, statuses, strict=True)
    ]
    url = settings.public_url
    news = [(events.ACCEPTED, events.event(url, order_id, "ordered", 1, items=len(scenes)))]
    news += [
        (
            events.ITEM_SUCCEEDED,
            events.event(url, order_id, "succeeded", n, collection=s.collection, item=s.item_id),
        )
        for s, n in delivered_at.items()
    ]
    if final in lifecycle.TERMINAL:
        news.append((events.COMPLETED, events.event(url, order_id, final, len(history))))
    # Productions in one order (collection, id): a production's row stays locked until the
    # commit, so two orders naming the same scenes never wait for each other in a cycle.
    offline = [] if hold else sorted((s.collection, s.item_id) for s in scenes if not s.online)
    return Plan(order, items, rows, written, news if terms.subscribed else [], offline)


def _dry_run_report(
    placing: Placing,
    period: str,
    scenes: list[Scene],
    held: dict[tuple[str, str], Any],
    classes: dict[str, str],
    snapshots: list[charging.Quota],
    refusal: dict[str, Any] | None,
) -> dict[str, Any]:
    items = []
    for s in scenes:
        prior = held.get((s.collection, s.item_id))
        reason = (
            f"{placing.organisation} holds this scene in {period} already (order {prior})"
            if prior
            else f"first time {placing.organisation} receives this scene in {period}"
        )
        items.append(
            {
                "collection": s.collection,
                "id": s.item_id,
                "class": classes[s.collection],
                "online": s.online,
                "charge": 0 if prior else 1,
                "reason": reason,
            }
        )
    return {
        "dry_run": True,
        "accepted": refusal is None,
        "requested": sum(i["charge"] for i in items),
        "items": items,
        "quota": [q.as_dict() for q in snapshots],
        **({"refused": refusal} if refusal else {}),
    }


async def _order_row(
    conn: asyncpg.Connection, order_id: uuid.UUID, org_id: int | None, lock: bool = False
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT o.*, g.name AS organisation FROM csdr.orders o"
        " JOIN csdr.organisations g ON g.id = o.org_id"
        " WHERE o.id = $1 AND ($2::bigint IS NULL OR o.org_id = $2)"
        + (" FOR UPDATE OF o" if lock else ""),
        order_id,
        org_id,
    )
    if row is None:
        raise OrderNotFound(f"no order {order_id}")
    return row


async def describe(
    conn: asyncpg.Connection, order_id: uuid.UUID, org_id: int | None, settings: Settings
) -> dict[str, Any]:
    """The order as the API shows it: status, items, history, the organisation's quota, links."""
    order = await _order_row(conn, order_id, org_id)
    items = await conn.fetch(
        "SELECT collection, item_id, class, status, charged, reason, updated_at"
        " FROM csdr.order_items WHERE order_id = $1",
        order_id,
    )
    history = await conn.fetch(
        "SELECT at, status, collection, item_id, reason_code, reason_text"
        " FROM csdr.order_history WHERE order_id = $1 ORDER BY id",
        order_id,
    )
    began = datetime.combine(order["period_start"], time.min, UTC)
    snapshot = await charging.snapshot(conn, order["org_id"], began, settings.default_quota)
    return _view(order, order["organisation"], items, history, snapshot, settings)


def _view(
    order: Mapping[str, Any],
    organisation: str,
    items: Sequence[Mapping[str, Any]],
    history: Sequence[Mapping[str, Any]],
    snapshot: list[charging.Quota],
    settings: Settings,
) -> dict[str, Any]:
    url = events.order_url(settings.public_url, order["id"])
    return {
        "id": str(order["id"]),
        "status": order["status"],
        "organisation": organisation,
        "created": iso(order["created_at"]),
        "updated": iso(order["updated_at"]),
        "period": period_name(order["period_start"], snapshot[0].anchor),
        "expires": iso(order["links_expire_at"]),
        "awaiting_approval": order["awaiting_approval"],
        "request": order["request"],
        "items": [
            {
                "collection": i["collection"],
                "id": i["item_id"],
                "class": i["class"],
                "status": i["status"],
                "charged": i["charged"],
                "reason": i["reason"],
                "updated": iso(i["updated_at"]),
            }
            for i in sorted(items, key=lambda i: (i["collection"], i["item_id"]))
        ],
        "history": [
            {
                "at": iso(h["at"]),
                "status": h["status"],
                **({"collection": h["collection"], "id": h["item_id"]} if h["item_id"] else {}),
                "reason_code": h["reason_code"],
                "reason_text": h["reason_text"],
            }
            for h in history
        ],
        "quota": [q.as_dict() for q in snapshot],
        "links": [
            {"rel": "self", "href": url, "type": "application/json"},
            {"rel": "items", "href": f"{url}/items", "type": "application/geo+json"},
        ],
    }


async def list_orders(
    conn: asyncpg.Connection,
    org_id: int | None,
    status: str | None,
    limit: int,
    settings: Settings,
    awaiting_approval: bool | None = None,
) -> list[dict[str, Any]]:
    """The latest orders the caller may see (its organisation's; an administrator's: all),
    optionally only those (not) waiting for an administrator's approval."""
    rows = await conn.fetch(
        "SELECT o.id, o.status, o.created_at, o.updated_at, o.awaiting_approval,"
        " g.name AS organisation,"
        " (SELECT count(*) FROM csdr.order_items i WHERE i.order_id = o.id) AS items"
        " FROM csdr.orders o JOIN csdr.organisations g ON g.id = o.org_id"
        " WHERE ($1::bigint IS NULL OR o.org_id = $1) AND ($2::text IS NULL OR o.status = $2)"
        " AND ($4::boolean IS NULL OR o.awaiting_approval = $4)"
        " ORDER BY o.created_at DESC, o.id LIMIT $3",
        org_id,
        status,
        limit,
        awaiting_approval,
    )
    return [
        {
            "id": str(r["id"]),
            "status": r["status"],
            "awaiting_approval": r["awaiting_approval"],
            "organisation": r["organisation"],
            "items": r["items"],
            "created": iso(r["created_at"]),
            "updated": iso(r["updated_at"]),
            "href": events.order_url(settings.public_url, r["id"]),
        }
        for r in rows
    ]


async def cancel(
    pool: asyncpg.Pool,
    order_id: uuid.UUID,
    org_id: int | None,
    at: datetime,
    settings: Settings,
) -> None:
    """Cancel what the order has not delivered yet, refunded; 409 for a finished order. A
    production already queued still runs (the scene becomes online for everyone). Run again when
    it loses a deadlock: the production watcher locks the orders waiting for a scene in id
    order, a cancel locks its own order first and then the item of the order its charge passes
    to."""

    async def run() -> None:
        async with pool.acquire() as conn, conn.transaction():
            order = await _order_row(conn, order_id, org_id, lock=True)
            lifecycle.steps(str(order["status"]), "canceled")  # 409 for a finished order
            await conn.execute(
                "UPDATE csdr.orders SET awaiting_approval = false WHERE id = $1", order_id
            )
            items = await conn.fetch(
                "SELECT * FROM csdr.order_items WHERE order_id = $1 AND status = ANY($2::text[])",
                order_id,
                list(lifecycle.WAITING),
            )
            for item in items:
                await _refund(conn, order, item, "canceled", at, "canceled", "canceled", settings)
            await _settle(conn, order_id, at, settings)

    await run_again_on_conflict_async(run, f"canceling order {order_id}")


async def production_finished(
    conn: asyncpg.Connection,
    collection: str,
    item_id: str,
    ok: bool,
    error: str | None,
    at: datetime,
    settings: Settings,
) -> int:
    """Move every order item pending this scene's production to `shipping` (delivered by
    `ship`), or fail and refund it, in the caller's transaction; how many items were settled.
    Items of orders waiting for approval stay `ordered`: approval delivers them."""
    rows = await conn.fetch(
        "SELECT i.* FROM csdr.order_items i WHERE i.collection = $1 AND i.item_id = $2"
        " AND i.status = 'pending' ORDER BY i.order_id",
        collection,
        item_id,
    )
    reason = f"production failed: {error or 'no reason given'}"
    for item in rows:
        order = await _order_row(conn, item["order_id"], None, lock=True)
        if ok:
            text = "produced; delivery being prepared"
            await _item_status(conn, order, item, "shipping", at, "produced", text)
        else:
            await _refund(conn, order, item, "failed", at, "production_failed", reason, settings)
        await _settle(conn, item["order_id"], at, settings)
    return len(rows)


async def ship(conn: asyncpg.Connection, at: datetime, settings: Settings, limit: int) -> int:
    """Deliver the `shipping` items of up to `limit` orders (charge committed, links valid
    from now, `item.succeeded` sent), in the caller's transaction; orders another process is
    shipping are skipped. How many orders were shipped."""
    orders = await conn.fetch(
        "SELECT o.* FROM csdr.orders o WHERE o.status = 'shipping' AND EXISTS (SELECT 1"
        " FROM csdr.order_items i WHERE i.order_id = o.id AND i.status = 'shipping')"
        " ORDER BY o.updated_at LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
    )
    for order in orders:
        items = await conn.fetch(
            "SELECT * FROM csdr.order_items WHERE order_id = $1 AND status = 'shipping'",
            order["id"],
        )
        for item in items:
            await _deliver(conn, order, item, at, settings)
        await _settle(conn, order["id"], at, settings)
    return len(orders)


def canonical(request: dict[str, Any]) -> dict[str, Any]:
    """A request as stored and compared for Idempotency-Key replays (JSON round trip)."""
    return dict(json.loads(json.dumps(request, sort_keys=True)))


async def renew(
    pool: asyncpg.Pool,
    order_id: uuid.UUID,
    org_id: int | None,
    at: datetime,
    settings: Settings,
) -> None:
    """New delivery links for the order, valid `link_ttl_days` from now; free of charge."""
    async with pool.acquire() as conn, conn.transaction():
        order = await _order_row(conn, order_id, org_id, lock=True)
        if order["status"] not in ("shipping", "succeeded", "partial"):
            raise TransitionRefused(
                f"the order is {order['status']}: it delivered nothing whose links could be"
                " renewed",
                status=order["status"],
            )
        expires = at + timedelta(days=settings.link_ttl_days)
        await conn.execute(
            "UPDATE csdr.orders SET links_expire_at = $2, updated_at = $3 WHERE id = $1",
            order_id,
            expires,
            at,
        )
        await _history(
            conn, order_id, at, order["status"], "renewed", f"links valid until {iso(expires)}"
        )


async def decide(
    pool: asyncpg.Pool,
    order_id: uuid.UUID,
    approve: bool,
    reason: str | None,
    at: datetime,
    settings: Settings,
) -> None:
    """An administrator approves a held order (online scenes delivered, offline ones queued
    for production) or rejects it (canceled, `reason_code: rejected`, refunded); 409 for an
    order not waiting for approval."""
    async with pool.acquire() as conn, conn.transaction():
        order = await _order_row(conn, order_id, None, lock=True)
        if not order["awaiting_approval"]:
            raise TransitionRefused(
                f"order {order_id} is {order['status']} and not waiting for approval",
                status=order["status"],
            )
        await conn.execute(
            "UPDATE csdr.orders SET awaiting_approval = false WHERE id = $1", order_id
        )
        items = await conn.fetch(
            "SELECT * FROM csdr.order_items WHERE order_id = $1 AND status = 'ordered'", order_id
        )
        if not approve:
            text = f"rejected by an administrator{f': {reason}' if reason else ''}"
            for item in items:
                await _refund(conn, order, item, "canceled", at, "rejected", text, settings)
            await _move(conn, order, "canceled", at, "rejected", text, settings)
            return
        await _history(conn, order_id, at, order["status"], "approved", reason)
        now_online = await scenes_online(conn, [(i["collection"], i["item_id"]) for i in items])
        offline = []
        for item in items:
            # An item deleted meanwhile is delivered: there is no package to produce it from.
            if now_online.get((item["collection"], item["item_id"]), True):
                await _deliver(conn, order, item, at, settings)
            else:
                text = "queued for production"
                await _item_status(conn, order, item, "pending", at, "production", text)
                offline.append(Scene(item["collection"], item["item_id"], False, None, None))
        await production.request(conn, offline)
        await _settle(conn, order_id, at, settings)
