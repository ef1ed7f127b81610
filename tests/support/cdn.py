"""A small shared HTTP cache in front of a service, as a CDN would stand in front of the tiler:
it stores and reuses GET answers by the rules of RFC 9111 that decide who may share what.

- Stored only with explicit freshness (`s-maxage` or `max-age`), never `no-store`, `private`
  or `Vary: *` (3, 5.2.2.7); an answer to a request carrying Authorization only when the answer
  says `public` or `s-maxage` (3.5).
- Keyed by the URL (path and query) and the request's values of the headers its `Vary` names
  (4.1): a variant is reused only for a request with the same values.
- Fresh while its age is under `s-maxage` (else `max-age`, 4.2.1); stale within
  `stale-while-revalidate` (RFC 5861): served at once, revalidated in the background; staler:
  revalidated first with If-None-Match (4.3.1), a 304 refreshing the stored answer (4.3.4).

Every answer says how it was made in `X-Cache` (HIT, STALE, REVALIDATED, MISS) and `Age`; the
requests that reached the origin are listed in `origin_requests`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

# Headers of one connection, never forwarded (RFC 9110 7.6.1), and those httpx re-derives.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "content-encoding",
}


# Statuses a cache understands and may store with explicit freshness (RFC 9110 15.1).
HEURISTIC_STATUSES = {200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501}


def directives(cache_control: str) -> dict[str, str | None]:
    """Cache-Control directives by lowercase name, with their values (RFC 9111 5.2)."""
    found: dict[str, str | None] = {}
    for part in cache_control.split(","):
        name, _, value = part.strip().partition("=")
        if name:
            found[name.lower()] = value.strip('"') if value else None
    return found


@dataclass
class Stored:
    """One stored answer (a variant of its URL)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    vary: dict[str, str | None]
    stored_at: float

    def header(self, name: str) -> str:
        """The answer's header `name` (empty when absent)."""
        return next((v for k, v in self.headers if k.lower() == name), "")

    def lifetimes(self) -> tuple[float, float]:
        """(freshness lifetime, stale-while-revalidate window), seconds."""
        cc = directives(self.header("cache-control"))
        fresh = cc.get("s-maxage") or cc.get("max-age") or "0"
        return float(fresh), float(cc.get("stale-while-revalidate") or 0)

    def age(self) -> float:
        """Seconds since the answer was stored (or last revalidated)."""
        return time.monotonic() - self.stored_at


def storable(request_headers: httpx.Headers, response: httpx.Response) -> bool:
    """Whether a shared cache may store this answer to a GET (see the module docstring)."""
    cc = directives(response.headers.get("cache-control", ""))
    if response.status_code not in HEURISTIC_STATUSES or "no-store" in cc or "private" in cc:
        return False
    if response.headers.get("vary", "").strip() == "*":
        return False
    if "s-maxage" not in cc and "max-age" not in cc:
        return False
    return "authorization" not in request_headers or "public" in cc or "s-maxage" in cc


def vary_names(headers: list[tuple[str, str]]) -> list[str]:
    """The request header names an answer's Vary lists, lowercase."""
    names: list[str] = []
    for name, value in headers:
        if name.lower() == "vary":
            names += [v.strip().lower() for v in value.split(",") if v.strip()]
    return names


def normalised(value: str | None) -> str | None:
    """A header value compared for Vary (RFC 9111 4.1: whitespace folded)."""
    return re.sub(r"\s+", " ", value.strip()) if value is not None else None


# status, headers, body, how it was made (X-Cache), age in seconds
Answer = tuple[int, list[tuple[str, str]], bytes, str, float]


@dataclass
class SharedCache:
    """The stored answers and the origin they come from."""

    origin: str
    entries: dict[str, list[Stored]] = field(default_factory=dict)
    origin_requests: list[tuple[str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fetch(self, target: str, headers: httpx.Headers) -> httpx.Response:
        """Ask the origin."""
        response = httpx.get(self.origin + target, headers=headers, timeout=60)
        with self.lock:
            self.origin_requests.append((target, response.status_code))
        return response

    def find(self, target: str, headers: httpx.Headers) -> Stored | None:
        """The stored variant of `target` whose Vary'd request headers match."""
        with self.lock:
            for entry in self.entries.get(target, []):
                if all(normalised(headers.get(n)) == v for n, v in entry.vary.items()):
                    return entry
        return None

    def store(self, target: str, headers: httpx.Headers, response: httpx.Response) -> Stored:
        """Remember an answer as the variant for these request headers."""
        kept = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in HOP_BY_HOP]
        vary = {n: normalised(headers.get(n)) for n in vary_names(kept)}
        entry = Stored(response.status_code, kept, response.content, vary, time.monotonic())
        with self.lock:
            others = [e for e in self.entries.get(target, []) if e.vary != vary]
            self.entries[target] = [*others, entry]
        return entry

    def revalidate(self, target: str, headers: httpx.Headers, entry: Stored) -> str:
        """Ask the origin whether `entry` is still current; refresh or replace it."""
        conditional = httpx.Headers(headers)
        if etag := entry.header("etag"):
            conditional["if-none-match"] = etag
        response = self.fetch(target, conditional)
        if response.status_code == 304:
            refreshed = {k.lower() for k, _ in response.headers.multi_items()}
            kept = [(k, v) for k, v in entry.headers if k.lower() not in refreshed]
            kept += [
                (k, v) for k, v in response.headers.multi_items() if k.lower() not in HOP_BY_HOP
            ]
            with self.lock:
                entry.headers, entry.stored_at = kept, time.monotonic()
            return "REVALIDATED"
        if storable(headers, response):
            self.store(target, headers, response)
        return "MISS"

    def answer(
        self, target: str, headers: httpx.Headers
    ) -> tuple[int, list[tuple[str, str]], bytes, str, float]:
        """(status, headers, body, how, age) for a GET of `target`."""
        entry = self.find(target, headers)
        if entry is not None:
            fresh_s, stale_s = entry.lifetimes()
            age = entry.age()
            if age < fresh_s:
                return entry.status, entry.headers, entry.body, "HIT", age
            if age < fresh_s + stale_s:
                threading.Thread(
                    target=self.revalidate, args=(target, headers, entry), daemon=True
                ).start()
                return entry.status, entry.headers, entry.body, "STALE", age
            if self.revalidate(target, headers, entry) == "REVALIDATED":
                return entry.status, entry.headers, entry.body, "REVALIDATED", 0.0
        response = self.fetch(target, headers)
        if storable(headers, response):
            self.store(target, headers, response)
        kept = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in HOP_BY_HOP]
        return response.status_code, kept, response.content, "MISS", 0.0


class Handler(BaseHTTPRequestHandler):
    """Answer GETs through the server's SharedCache."""

    server: CdnServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        headers = httpx.Headers(
            [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]
        )
        status, kept, body, how, age = self.server.cache.answer(self.path, headers)
        self.send_response(status)
        for name, value in kept:
            if name.lower() not in ("age", "x-cache", "date", "server"):
                self.send_header(name, value)
        self.send_header("Age", str(int(age)))
        self.send_header("X-Cache", how)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet."""


class CdnServer(ThreadingHTTPServer):
    """The HTTP server holding the cache."""

    daemon_threads = True

    def __init__(self, cache: SharedCache) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.cache = cache


@contextmanager
def cdn(origin: str) -> Iterator[tuple[str, SharedCache]]:
    """A shared cache in front of `origin` on a free port of 127.0.0.1: its URL and its state."""
    server = CdnServer(SharedCache(origin.rstrip("/")))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.cache
    finally:
        server.shutdown()
        server.server_close()
