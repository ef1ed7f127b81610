"""The push worker: wakes on LISTEN/NOTIFY, fans item events out into deliveries in SQL
(csdr.fan_out: PostGIS for the area, pgSTAC's CQL2 for the filter) and sends the deliveries.

Several workers (in several processes) may run against one database: events and deliveries are
claimed with FOR UPDATE SKIP LOCKED. Notifications only shorten the wait; a worker also polls, so a
lost notification (or a LISTEN connection that dropped) delays a delivery, never loses it.
"""

import asyncio
import contextlib
import logging
import math
import uuid
from typing import Any

import asyncpg
import httpx2

from csdr_push import deliveries, events, targets
from csdr_push.errors import InvalidWebhook
from csdr_push.settings import Settings
from csdr_service import pools
from csdr_service.errors import log_retry

logger = logging.getLogger(__name__)

EVENTS_CHANNEL = "csdr_item_events"
DELIVERIES_CHANNEL = "csdr_deliveries"
LANE_CONNECTIONS = 8
"""Connections per HTTP client; see Worker.__init__."""


class Worker:
    """Fan-out and delivery loops sharing one pool and one HTTP client."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        self.events_ready = asyncio.Event()
        self.deliveries_ready = asyncio.Event()
        self.in_flight: set[asyncio.Task[None]] = set()
        self.claim_batch = max(1, settings.concurrency // 4)
        # Sends go through a few small clients ("lanes"), the least busy first, not one client
        # with `concurrency` connections: before each request httpcore probes every idle
        # connection of its pool with a syscall, which at 64 connections cost more CPU than the
        # rest of a delivery. httpx2, not httpx: httpx's pool costs ~6 ms of CPU per request at
        # 64 connections, httpx2's ~1 ms. Every connection is kept alive (the default keeps 20).
        lanes = max(1, math.ceil(settings.concurrency / LANE_CONNECTIONS))
        per_lane = math.ceil(settings.concurrency / lanes)
        self.lanes = [
            httpx2.AsyncClient(
                timeout=settings.timeout_s,
                follow_redirects=False,
                limits=httpx2.Limits(max_connections=per_lane, max_keepalive_connections=per_lane),
            )
            for _ in range(lanes)
        ]
        self.lane_load = [0] * lanes
        # Successes are recorded together: one statement (and one commit) per batch of sends that
        # finished while the previous batch was being written, not one per delivery.
        self.sent: list[tuple[uuid.UUID, int, int]] = []
        self.sent_recorded: asyncio.Future[None] | None = None
        self.sent_ready = asyncio.Event()
        self.targets = targets.Pinned(settings)
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
            asyncio.create_task(self._record_loop(), name="push-record"),
        ]

    async def stop(self) -> None:
        """Cancel the loops and in-flight sends (they are retried after their lease)."""
        for task in [*self.tasks, *self.in_flight]:
            task.cancel()
        await asyncio.gather(*self.tasks, *self.in_flight, return_exceptions=True)
        if self.listener is not None and not self.listener.is_closed():
            await self.listener.close()
        for lane in self.lanes:
            await lane.aclose()

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        (self.events_ready if channel == EVENTS_CHANNEL else self.deliveries_ready).set()

    async def _listen_loop(self) -> None:
        """Keep one LISTEN connection; reconnect when it drops."""
        while True:
            try:
                if self.listener is None or self.listener.is_closed():
                    self.listener = await pools.connect("csdr-push")
                    await self.listener.add_listener(EVENTS_CHANNEL, self._on_notify)
                    await self.listener.add_listener(DELIVERIES_CHANNEL, self._on_notify)
                    self.events_ready.set()  # anything committed while we were not listening
            except Exception as exc:
                log_retry(logger, "cannot LISTEN (polling meanwhile)", exc)
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
            except Exception as exc:
                log_retry(logger, "fan-out failed", exc)
            await self._wait(self.events_ready, self.settings.poll_interval_s)

    async def _delivery_loop(self) -> None:
        while True:
            wait_s = self.settings.poll_interval_s
            try:
                free = self.settings.concurrency - len(self.in_flight)
                # Claim in batches, not one delivery per freed slot: each claim is a query.
                if free >= self.claim_batch or (free > 0 and not self.in_flight):
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
            except Exception as exc:
                log_retry(logger, "claiming deliveries failed", exc)
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
            target = await self.targets.target(delivery["webhook_url"])
            response = await self._post(target, payload.encode(), headers)
            status_code = response.status_code
            error = None if response.is_success else f"HTTP {status_code} from the endpoint"
        except InvalidWebhook as exc:  # checked again at every send: DNS may have changed
            error = f"refused at send: {exc}"
        except httpx2.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        try:
            if error is None:
                assert status_code is not None
                await self._record_success(delivery["id"], delivery["attempts"], status_code)
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
        except Exception as exc:
            # The claim's lease runs out and the delivery is sent again, with the same webhook-id.
            log_retry(logger, f"cannot record delivery {msg_id}", exc)

    async def _record_success(self, delivery_id: uuid.UUID, attempts: int, status: int) -> None:
        """Queue a success for the next batch and wait until that batch is written."""
        if self.sent_recorded is None:
            self.sent_recorded = asyncio.get_running_loop().create_future()
        recorded = self.sent_recorded
        self.sent.append((delivery_id, attempts, status))
        self.sent_ready.set()
        await asyncio.shield(recorded)  # a cancelled sender must not cancel the others' wait

    async def _record_loop(self) -> None:
        """Write the queued successes, one batch at a time."""
        while True:
            await self.sent_ready.wait()
            self.sent_ready.clear()
            batch, recorded = self.sent, self.sent_recorded
            self.sent, self.sent_recorded = [], None
            if recorded is None:
                continue
            try:
                await deliveries.record_successes(self.pool, batch)
            except Exception as exc:  # each sender logs it; this loop must go on
                recorded.set_exception(exc)
            else:
                recorded.set_result(None)

    async def _post(
        self, target: targets.Target, content: bytes, headers: dict[str, str]
    ) -> httpx2.Response:
        """POST to the target's checked address through the least busy lane."""
        lane = min(range(len(self.lanes)), key=self.lane_load.__getitem__)
        self.lane_load[lane] += 1
        extensions = {"sni_hostname": target.sni} if target.sni else None
        try:
            return await self.lanes[lane].post(
                target.url,
                content=content,
                headers={**headers, "Host": target.host},
                extensions=extensions,
            )
        finally:
            self.lane_load[lane] -= 1

    @staticmethod
    async def _wait(ready: asyncio.Event, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), timeout_s)
        ready.clear()
