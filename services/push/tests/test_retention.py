"""Housekeeping under steady traffic: a week of simulated days, each writing scenes that fan out
into deliveries (some delivered, some dead, some still pending), then the push service's pruning
(deliveries) and the feed's (events). Rows stay bounded by the retention; pending deliveries and
the events they name are never removed."""

import asyncio
from datetime import timedelta

import psycopg
from psycopg.types.json import Jsonb

from csdr_federation.retention import prune as prune_feed
from csdr_push.deliveries import prune as prune_deliveries
from csdr_service import pools
from services.push.tests.samples import stac_item

DAYS, SCENES_PER_DAY, KEEP_DAYS = 7, 12, 2


def new_day(db: psycopg.Connection, day: int) -> None:
    """Scenes of one day, fanned out; then the day's outcomes: scene 0's delivery left pending
    (its receiver is down), scene 1's dead, the rest delivered."""
    for n in range(SCENES_PER_DAY):
        with db.transaction():
            item = stac_item(f"D{day}-{n}")
            db.execute("SELECT pgstac.upsert_item(%s)", (Jsonb(item),))
    with db.transaction():
        db.execute("SELECT * FROM csdr.fan_out(1000)")
    outcome = (
        "UPDATE csdr.deliveries d SET status = %s, delivered_at = {}, dead_at = {}"
        " FROM csdr.item_events e WHERE e.id = d.event_id AND e.item_id = %s"
    )
    db.execute(outcome.format("NULL", "now()"), ("dead", f"D{day}-1"))
    for n in range(2, SCENES_PER_DAY):
        db.execute(outcome.format("now()", "NULL"), ("delivered", f"D{day}-{n}"))


def a_day_passes(db: psycopg.Connection) -> None:
    for table, columns in (
        ("csdr.item_events", ("created_at", "processed_at")),
        ("csdr.collection_events", ("created_at",)),
        ("csdr.deliveries", ("created_at", "delivered_at", "dead_at")),
    ):
        moved = ", ".join(f"{c} = {c} - interval '1 day'" for c in columns)
        db.execute(f"UPDATE {table} SET {moved}")


def counts(db: psycopg.Connection) -> dict[str, int]:
    row = db.execute(
        "SELECT (SELECT count(*) FROM csdr.item_events),"
        " (SELECT count(*) FROM csdr.deliveries WHERE status = 'pending'),"
        " (SELECT count(*) FROM csdr.deliveries WHERE status <> 'pending')"
    ).fetchone()
    assert row is not None
    return dict(zip(("events", "pending", "finished"), row, strict=True))


async def housekeeping() -> tuple[int, int]:
    pool = await pools.open_pool(2, "test", pgstac=True)
    try:
        keep = timedelta(days=KEEP_DAYS)
        return await prune_deliveries(pool, keep), await prune_feed(pool, keep)
    finally:
        await pool.close()


def test_rows_stay_bounded_under_churn_and_pending_work_is_kept(db, upsert):
    db.execute(
        "INSERT INTO csdr.subscriptions (collections, webhook_url, webhook_secret)"
        " VALUES (ARRAY['gf1'], 'http://127.0.0.1:9/hook', 'whsec_x')"
    )
    history = []
    for day in range(DAYS):
        new_day(db, day)
        asyncio.run(housekeeping())
        history.append(counts(db))
        a_day_passes(db)
    # Finished deliveries: only the retention's days of them (today's and yesterday's).
    finished_per_day = SCENES_PER_DAY - 1
    assert all(h["finished"] <= KEEP_DAYS * finished_per_day for h in history), history
    assert history[-1]["finished"] == history[-2]["finished"] == KEEP_DAYS * finished_per_day
    # Events: the retention's days of them, and the older ones a pending delivery still names.
    pending = history[-1]["pending"]
    assert pending == DAYS  # one left pending each day, none removed
    assert history[-1]["events"] == KEEP_DAYS * SCENES_PER_DAY + (DAYS - KEEP_DAYS)
    assert history[-1]["events"] == history[-2]["events"] + 1  # grows only by the pending one
    names = db.execute(
        "SELECT count(*) FROM csdr.deliveries d JOIN csdr.item_events e ON e.id = d.event_id"
        " WHERE d.status = 'pending'"
    ).fetchone()[0]
    assert names == pending
