"""Retention of the change feed: events older than `retention_days` are removed now and then
(csdr.prune_feed_events, migration 0017); a reader whose cursor lies before them gets 410."""

import asyncio
import contextlib
import logging
from datetime import timedelta

import asyncpg

logger = logging.getLogger(__name__)


async def prune(pool: asyncpg.Pool, keep: timedelta) -> int:
    """Remove the events older than `keep` that every reader has been able to pass."""
    return int(await pool.fetchval("SELECT csdr.prune_feed_events($1)", keep))


class Pruner:
    """Prunes the feed every `interval_s` seconds while the service runs."""

    def __init__(self, pool: asyncpg.Pool, keep: timedelta, interval_s: float) -> None:
        self.pool = pool
        self.keep = keep
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start pruning in the background."""
        self._task = asyncio.create_task(self._run(), name="federation-retention")

    async def stop(self) -> None:
        """Stop pruning."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                removed = await prune(self.pool, self.keep)
                if removed:
                    logger.info("federation: removed %d events older than %s", removed, self.keep)
            except (OSError, asyncpg.PostgresError) as exc:
                logger.warning("federation: pruning the feed failed: %r", exc)
            await asyncio.sleep(self.interval_s)
