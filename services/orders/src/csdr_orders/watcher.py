"""The production watcher: finishes the orders waiting on productions whose ingest job has ended.
Several processes may run one (productions and orders are claimed with SKIP LOCKED). Each claimed
production and the order items it moves to `shipping` are one transaction; delivering the
shipping items (orders.ship) is the next, so a process stopped between the two leaves them
`shipping` for the next pass."""

import asyncio
import contextlib
import logging

import asyncpg

from csdr_access.periods import Clock
from csdr_orders import orders, production
from csdr_orders.settings import Settings
from csdr_service.errors import log_retry

logger = logging.getLogger(__name__)


SHIP_BATCH = 20
"""Orders shipped per transaction."""


async def finish_productions(pool: asyncpg.Pool, settings: Settings, clock: Clock) -> int:
    """Settle the order items of every production that ended (`shipping`, or failed and
    refunded), a transaction per production; how many productions were settled."""
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


async def ship_all(pool: asyncpg.Pool, settings: Settings, clock: Clock) -> int:
    """Deliver every `shipping` order item, SHIP_BATCH orders a transaction; how many orders."""
    shipped = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            batch = await orders.ship(conn, clock(), settings, SHIP_BATCH)
        shipped += batch
        if batch < SHIP_BATCH:
            return shipped


async def settle_finished(pool: asyncpg.Pool, settings: Settings, clock: Clock) -> int:
    """Settle the orders of every production that ended, then ship what is `shipping`; how
    many productions were settled."""
    settled = await finish_productions(pool, settings, clock)
    await ship_all(pool, settings, clock)
    return settled


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
            except Exception as exc:
                log_retry(logger, "settling productions failed", exc)
            await asyncio.sleep(self.settings.poll_interval_s)
