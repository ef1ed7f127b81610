"""The push worker: wakes on LISTEN/NOTIFY, fans item events out into deliveries in SQL
(csdr.fan_out: PostGIS for the area, pgSTAC's CQL2 for the filter) and sends the deliveries.

Several workers (in several processes) may run against one database: events and deliveries are
claimed with FOR UPDATE SKIP LOCKED. Notifications only shorten the wait; a worker also polls, so a
lost notification (or a LISTEN connection that dropped) delays a delivery, never loses it.
"""

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg
import httpx

from csdr_push import db, deliveries, events
from csdr_push.settings import Settings

logger = logging.getLogger(__name__)

EVENTS_CHANNEL = "csdr_item_events"
DELIVERIES_CHANNEL = "csdr_deliveries"


class Worker:
    """Fan-out and delivery loops sharing one pool and one HTTP client."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        self.events_ready = asyncio.Event()
        self.deliveries_ready = asyncio.Event()
        self.in_flight: set[asyncio.Task[None]] = set()
        self.http = httpx.AsyncClient(
            timeout=settings.timeout_s,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=settings.concurrency),
        )
        self.listener: asyncpg.Connection | None = None
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start listening and both loops."""
        self.events_ready.set()  # events committed while no worker ran
        self.deliveries_ready.set()
        self.tasks = [
            asyncio.create_task(self._listen_loop(), name="push-listen"),
            asyncio.create_task(self._fan_out_loop(), name="push-fan-out"),
            asyncio.create_task(self._delivery_loop(), name="push-deliver"),
        ]

    async def stop(self) -> None:
        """Cancel the loops and in-flight sends (they are retried after their lease)."""
        for task in [*self.tasks, *self.in_flight]:
            task.cancel()
        await asyncio.gather(*self.tasks, *self.in_flight, return_exceptions=True)
        if self.listener is not None and not self.listener.is_closed():
            await self.listener.close()
        await self.http.aclose()

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        (self.events_ready if channel == EVENTS_CHANNEL else self.deliveries_ready).set()

    async def _listen_loop(self) -> None:
        """Keep one LISTEN connection; reconnect when it drops."""
        while True:
            try:
                if self.listener is None or self.listener.is_closed():
                    self.listener = await db.connect()
                    await self.listener.add_listener(EVENTS_CHANNEL, self._on_notify)
                    await self.listener.add_listener(DELIVERIES_CHANNEL, self._on_notify)
                    self.events_ready.set()  # anything committed while we were not listening
            except (OSError, asyncpg.PostgresError) as exc:
                logger.warning("cannot LISTEN (polling meanwhile): %r", exc)
            await asyncio.sleep(self.settings.poll_interval_s)

    async def _fan_out_loop(self) -> None:
        while True:
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    row = await conn.fetchrow(
                        "SELECT events, deliveries FROM csdr.fan_out($1)",
                        self.settings.fan_out_batch,
                    )
                assert row is not None
                if row["deliveries"]:
                    self.deliveries_ready.set()
                if row["events"]:
                    continue  # there may be more
            except (OSError, asyncpg.PostgresError) as exc:
                logger.warning("fan-out failed (retrying): %r", exc)
            await self._wait(self.events_ready, self.settings.poll_interval_s)

    async def _delivery_loop(self) -> None:
        while True:
            wait_s = self.settings.poll_interval_s
            try:
                free = self.settings.concurrency - len(self.in_flight)
                if free > 0:
                    claimed = await deliveries.claim(self.pool, free, self.settings.lease_s)
                    for delivery in claimed:
                        task = asyncio.create_task(self._send(delivery))
                        self.in_flight.add(task)
                        task.add_done_callback(self._sent)
                    if len(claimed) == free:
                        await asyncio.sleep(0)
                        continue
                    due_in = await deliveries.next_due_in_s(self.pool)
                    if due_in is not None:
                        wait_s = max(0.01, min(wait_s, due_in))
            except (OSError, asyncpg.PostgresError) as exc:
                logger.warning("claiming deliveries failed (retrying): %r", exc)
            await self._wait(self.deliveries_ready, wait_s)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self.in_flight.discard(task)
        self.deliveries_ready.set()  # a slot is free

    async def _send(self, delivery: asyncpg.Record) -> None:
        """One attempt: POST the signed event, record the outcome."""
        payload = events.body(events.cloud_event(delivery, self.settings))
        msg_id = str(delivery["id"])
        headers = events.signed_headers(delivery["webhook_secret"], msg_id, payload, events.now())
        status_code: int | None = None
        try:
            response = await self.http.post(
                delivery["webhook_url"], content=payload.encode(), headers=headers
            )
            status_code = response.status_code
            error = None if response.is_success else f"HTTP {status_code} from the endpoint"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        try:
            if error is None:
                assert status_code is not None
                await deliveries.record_success(
                    self.pool, delivery["id"], delivery["attempts"], status_code
                )
            else:
                outcome = await deliveries.record_failure(
                    self.pool,
                    delivery["id"],
                    delivery["attempts"],
                    status_code,
                    error,
                    self.settings,
                )
                log = logger.warning if outcome == "dead" else logger.info
                log(
                    "delivery %s attempt %d failed (%s): %s",
                    msg_id,
                    delivery["attempts"],
                    outcome,
                    error,
                )
        except (OSError, asyncpg.PostgresError) as exc:
            # The claim's lease runs out and the delivery is sent again, with the same webhook-id.
            logger.warning("cannot record delivery %s: %r", msg_id, exc)

    @staticmethod
    async def _wait(ready: asyncio.Event, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), timeout_s)
        ready.clear()
