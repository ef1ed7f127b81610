"""Retention of the change feed: events older than `retention_days` are removed now and then
(csdr.prune_feed_events, migration 0017); a reader whose cursor lies before them gets 410."""

from datetime import timedelta

import asyncpg

from csdr_service.periodic import Periodic


async def prune(pool: asyncpg.Pool, keep: timedelta) -> int:
    """Remove the events older than `keep` that every reader has been able to pass."""
    return int(await pool.fetchval("SELECT csdr.prune_feed_events($1)", keep))


def pruner(pool: asyncpg.Pool, keep: timedelta, interval_s: float) -> Periodic:
    """Prunes the feed every `interval_s` seconds while the service runs."""
    return Periodic("federation-retention", interval_s, lambda: prune(pool, keep))
