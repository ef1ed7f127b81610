"""The push service's own metrics, read from the outbox at scrape time (so any replica reports
the node's whole state): how far fan-out lags behind the item events, deliveries waiting past
their due time, dead letters, and the database pool."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

from csdr_service.metrics import Metrics

# Each reads one partial index (0004_push.sql, 0022_push_dead_letters_index.sql).
OLDEST_UNPROCESSED_SQL = """
SELECT coalesce(extract(epoch FROM now() - created_at), 0) FROM csdr.item_events
WHERE processed_at IS NULL ORDER BY id LIMIT 1
"""
OVERDUE_SQL = """
SELECT count(*), coalesce(extract(epoch FROM now() - min(next_attempt_at)), 0)
FROM csdr.deliveries WHERE status = 'pending' AND next_attempt_at <= now()
"""
DEAD_SQL = "SELECT count(*) FROM csdr.deliveries WHERE status = 'dead'"


class PushMetrics:
    """The gauges the push service adds to its `Metrics`."""

    def __init__(self, metrics: Metrics, pool: Callable[[], asyncpg.Pool]) -> None:
        """Register on `metrics`; `pool()` is the app's pool once the lifespan opened it."""
        self.pool = pool
        self.event_lag = metrics.gauge(
            "csdr_push_event_lag_seconds",
            "Age of the oldest item event not yet fanned out to subscriptions (0: none).",
        )
        self.overdue = metrics.gauge(
            "csdr_push_deliveries_overdue", "Pending deliveries past their due time."
        )
        self.delivery_lag = metrics.gauge(
            "csdr_push_delivery_lag_seconds",
            "How long the most overdue pending delivery has waited past its due time.",
        )
        self.dead = metrics.gauge(
            "csdr_push_dead_letters", "Deliveries that used up their attempts (csdr.dead_letters)."
        )
        metrics.on_scrape(self.refresh)
        metrics.watch_pools(lambda: {"primary": pool()})

    async def refresh(self) -> None:
        """Read the outbox."""
        async with self.pool().acquire() as conn:
            self.event_lag.set(float(await conn.fetchval(OLDEST_UNPROCESSED_SQL) or 0))
            overdue, lag = await conn.fetchrow(OVERDUE_SQL)
            self.overdue.set(overdue)
            self.delivery_lag.set(float(lag))
            self.dead.set(await conn.fetchval(DEAD_SQL))
