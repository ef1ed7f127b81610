"""Per-key rate limits shared by every process of a service: a token bucket per (service, key
prefix) in the database (csdr.take_tokens, migration 0032).

A process takes tokens a batch at a time (a tenth of a second's worth) and spends them locally,
so a request costs a database call only once a batch is spent; tokens it holds lapse after a
second. N processes of a service together allow its rate once, give or take a batch each.
Anonymous callers are not limited here (the time limit and the image bounds hold for them).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import psycopg

TAKE_SQL = "SELECT granted, wait_s FROM csdr.take_tokens($1, $2, $3, $4)"
HELD_S = 1.0
"""How long tokens taken from the database may be spent by the process that took them."""


class RateLimiter:
    """`rate_per_s` requests a second on average per key of `service`, bursts up to `burst`."""

    def __init__(
        self, rate_per_s: float, burst: int, service: str = "", batch: int | None = None
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.service = service
        self.batch = batch or max(1, min(burst, math.ceil(rate_per_s / 10)))
        self._held: dict[str, tuple[int, float]] = {}  # caller -> (tokens, taken at)
        self._lock = threading.Lock()

    def _spend(self, caller: str) -> bool:
        """Spend one locally held token of `caller`'s, if any is still good."""
        with self._lock:
            tokens, taken_at = self._held.get(caller, (0, 0.0))
            if tokens >= 1 and time.monotonic() - taken_at < HELD_S:
                self._held[caller] = (tokens - 1, taken_at)
                return True
            self._held.pop(caller, None)
            return False

    def _keep(self, caller: str, granted: int) -> None:
        """One token of a new batch spent now, the rest held with what another request of the
        caller's took meanwhile (held from now on)."""
        now = time.monotonic()
        with self._lock:
            if len(self._held) > 100_000:
                self._held.clear()
            tokens, taken_at = self._held.get(caller, (0, 0.0))
            still_good = tokens if now - taken_at < HELD_S else 0
            self._held[caller] = (still_good + granted - 1, now)

    def _args(self, caller: str) -> tuple[str, float, float, int]:
        return (f"{self.service}:{caller}", self.rate_per_s, float(self.burst), self.batch)

    def acquire(self, conn: psycopg.Connection, caller: str) -> float:
        """Take a token for `caller` (over psycopg); 0 when allowed, else seconds to wait."""
        if self._spend(caller):
            return 0.0
        with psycopg.RawCursor(conn) as cur:
            granted, wait_s = cur.execute(TAKE_SQL, self._args(caller)).fetchone()  # type: ignore[misc]
        if granted >= 1:
            self._keep(caller, granted)
            return 0.0
        # Another request of the caller's may have taken the bucket's last batch meanwhile.
        return 0.0 if self._spend(caller) else float(wait_s)

    async def acquire_async(self, conn: Any, caller: str) -> float:
        """acquire() over an asyncpg connection or pool."""
        if self._spend(caller):
            return 0.0
        row = await conn.fetchrow(TAKE_SQL, *self._args(caller))
        if row["granted"] >= 1:
            self._keep(caller, row["granted"])
            return 0.0
        return 0.0 if self._spend(caller) else float(row["wait_s"])

    @staticmethod
    def retry_after(wait_s: float) -> str:
        """The Retry-After header value (whole seconds, at least 1)."""
        return str(max(1, math.ceil(wait_s)))
