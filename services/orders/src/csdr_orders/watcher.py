"""The production watcher: finishes the orders waiting on productions whose ingest job has ended.
Several processes may run one (productions are claimed with SKIP LOCKED); each claimed production
and the orders it settles are one transaction."""

import asyncio
import contextlib
import logging

import asyncpg

from csdr_access.periods import Clock
from csdr_orders import orders, production
from csdr_orders.settings import Settings

logger = logging.getLogger(__name__)


async def settle_finished(pool: asyncpg.Pool, settings: Settings, clock: Clock) -> int:
    """Settle the orders of every production that ended; how many productions were settled."""
    settled = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            done = await production.finished(conn, 1)
            for row in done:
                await orders.production_finished(
                    conn,
                    row["collection"],
                    row["item_id"],
                    row["ok"],
                    row["error"],
                    clock(),
                    settings,
                )
                logger.info(
                    "production of %s/%s %s",
                    row["collection"],
                    row["item_id"],
                    "succeeded" if row["ok"] else f"failed: {row['error']}",
                )
        if not done:
            return settled
        settled += len(done)


class Watcher:
    """A task polling for ended productions every `poll_interval_s`."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings, clock: Clock) -> None:
        self.pool = pool
        self.settings = settings
        self.clock = clock
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start polling."""
        self.task = asyncio.create_task(self._loop(), name="orders-productions")

    async def stop(self) -> None:
        """Stop polling (a transaction in progress is rolled back)."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _loop(self) -> None:
        while True:
            try:
                await settle_finished(self.pool, self.settings, self.clock)
            except (OSError, asyncpg.PostgresError) as exc:
                logger.warning("settling productions failed (retrying): %r", exc)
            await asyncio.sleep(self.settings.poll_interval_s)
