"""HTTP caching of everything under one item: an ETag tied to the item's version, 304 on a
matching If-None-Match, and a bounded in-process cache of the rendered responses.

The version is a hash of the item's row (csdr_tiler.items), read once per request with a
primary-key lookup; a re-ingest changes it, so the next request renders afresh and every earlier
ETag stops matching. Mosaics (collections, searches) change with any new scene and are not cached
here.

Answers about an item of a restricted collection are kept per API key (csdr_tiler.access says
who may share each answer), so a cached answer or a 304 never reaches a caller who may not see
the item: the access check runs before this cache, and the key is in the ETag.
"""

import hashlib
import re
import threading
from dataclasses import dataclass

import anyio.to_thread
from cachetools import LRUCache
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from csdr_tiler.items import Catalogue, ItemNotFound

ITEM_PATH = re.compile(r"^/collections/(?P<collection>[^/]+)/items/(?P<item>[^/]+)/")


@dataclass(frozen=True)
class Cached:
    """A rendered 200 response."""

    headers: list[tuple[bytes, bytes]]
    body: bytes


class ResponseCache:
    """Responses by ETag, bounded by the total size of their bodies."""

    def __init__(self, max_bytes: int, max_entry_bytes: int) -> None:
        """Hold up to `max_bytes` of bodies, none larger than `max_entry_bytes`."""
        self.max_entry_bytes = max_entry_bytes
        self._lock = threading.Lock()
        self._cache: LRUCache[str, Cached] = LRUCache(
            maxsize=max_bytes, getsizeof=lambda c: len(c.body) + 200
        )

    def get(self, etag: str) -> Cached | None:
        """The response stored under `etag`, if any."""
        with self._lock:
            return self._cache.get(etag)

    def put(self, etag: str, response: Cached) -> None:
        """Store a response unless it is too large to be worth it."""
        if len(response.body) <= self.max_entry_bytes:
            with self._lock:
                self._cache[etag] = response


def etag_for(version: str, scope: Scope, audience: str = "public") -> str:
    """A strong ETag from the item version, who may share the answer (`public`, or one key for
    a restricted collection) and the request's path and query."""
    digest = hashlib.sha256(version.encode())
    digest.update(b"\0" + audience.encode() + b"\0")
    digest.update(scope["path"].encode())
    digest.update(b"?" + scope.get("query_string", b""))
    return f'"{digest.hexdigest()[:32]}"'


def matches(if_none_match: bytes, etag: str) -> bool:
    """RFC 9110 If-None-Match: `*` or any listed tag (weak comparison)."""
    tags = {t.strip().removeprefix("W/") for t in if_none_match.decode("latin-1").split(",")}
    return "*" in tags or etag in tags


class ItemCacheMiddleware:
    """ETag, 304 and the response cache for GETs under `/collections/{c}/items/{i}/`."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_entry_bytes: int) -> None:
        """Wrap `app` with a cache of up to `max_bytes` of responses."""
        self.app = app
        self.cache = ResponseCache(max_bytes, max_entry_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer from the cache or a 304 when possible, else render and remember."""
        match = ITEM_PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        # Set by csdr_tiler.access once the caller may see the item; without it, no caching.
        audience = scope.get("state", {}).get("cache_audience") if match else None
        if match is None or audience is None or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        # The app's Catalogue, created in its lifespan (Starlette puts the app in the scope).
        catalogue: Catalogue = scope["app"].state.csdr_catalogue
        try:
            version = await anyio.to_thread.run_sync(
                catalogue.item_version, match["collection"], match["item"]
            )
        except ItemNotFound:
            await self.app(scope, receive, send)  # the route answers the 404
            return
        scope.setdefault("state", {})["item_version"] = version
        etag = etag_for(version, scope, audience)
        headers = dict(scope.get("headers") or [])
        if matches(headers.get(b"if-none-match", b""), etag):
            await send(
                {
                    "type": "http.response.start",
                    "status": 304,
                    "headers": [(b"etag", etag.encode())],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        if (hit := self.cache.get(etag)) is not None:
            await send({"type": "http.response.start", "status": 200, "headers": hit.headers})
            await send({"type": "http.response.body", "body": hit.body})
            return
        await self._render(scope, receive, send, etag)

    async def _render(self, scope: Scope, receive: Receive, send: Send, etag: str) -> None:
        start: Message = {}
        chunks: list[bytes] = []

        async def remember(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if message["status"] == 200:
                    message["headers"] = [*message.get("headers", []), (b"etag", etag.encode())]
                start = message
            elif start.get("status") == 200 and message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    self.cache.put(etag, Cached(list(start["headers"]), b"".join(chunks)))
            await send(message)

        await self.app(scope, receive, remember)
