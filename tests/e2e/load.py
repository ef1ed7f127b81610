"""Load for tests that break a service under it, and waiting for what follows."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import httpx

T = TypeVar("T")


class Load:
    """GETs in a loop on two threads, every answer recorded as (url, start, end, status):
    0 when it timed out, -1 when the connection was refused or cut."""

    def __init__(self, urls: list[str], timeout_s: float = 30) -> None:
        self.urls = urls
        self.timeout_s = timeout_s
        self.results: list[tuple[str, float, float, int]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,)) for n in range(2)]

    def _run(self, n: int) -> None:
        with httpx.Client(timeout=self.timeout_s) as client:
            i = n
            while not self._stop.is_set():
                url = self.urls[i % len(self.urls)]
                started = time.monotonic()
                try:
                    status = client.get(url).status_code
                except httpx.TimeoutException:
                    status = 0
                except httpx.TransportError:
                    status = -1
                self.results.append((url, started, time.monotonic(), status))
                i += 1
                time.sleep(0.02)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def wait_for(check: Callable[[], T], timeout_s: float = 240, what: str = "") -> T:
    """Poll `check` until it returns something true (returned), or raise TimeoutError naming
    `what`."""
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached in {timeout_s}s: {what}")
        time.sleep(0.1)
    return value
