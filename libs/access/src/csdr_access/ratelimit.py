"""Per-caller rate limits: a token bucket per API key (or per client address when anonymous).

In-process: each service process keeps its own buckets, so N processes allow N times the rate.
"""

import math
import threading
import time


class RateLimiter:
    """`rate_per_s` requests a second on average, bursts of up to `burst`."""

    def __init__(self, rate_per_s: float, burst: int, max_callers: int = 100_000) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_callers = max_callers
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, last refill)
        self._lock = threading.Lock()

    def acquire(self, caller: str) -> float:
        """Take a token for `caller`; return 0 when allowed, else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(caller, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate_per_s)
            if tokens >= 1:
                if len(self._buckets) >= self.max_callers:
                    self._buckets.clear()
                self._buckets[caller] = (tokens - 1, now)
                return 0.0
            self._buckets[caller] = (tokens, now)
            return (1 - tokens) / self.rate_per_s

    @staticmethod
    def retry_after(wait_s: float) -> str:
        """The Retry-After header value (whole seconds, at least 1)."""
        return str(max(1, math.ceil(wait_s)))
