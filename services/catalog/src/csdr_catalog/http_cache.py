"""ETag and Cache-Control on collection and item documents (`GET /collections`,
`/collections/{id}`, `/collections/{id}/items/{item_id}`), so harvesters and CDNs revalidate with
`If-None-Match` and get 304 instead of the document again (RFC 9110, 8.8.3 and 13.1.2).

A weak ETag over the body: the body is built per request (links carry the request's host), so
the tag is as strong a promise as the bytes allow and needs no database timestamp. Searches and
item pages are not tagged: they page and change with every ingest.
"""

from __future__ import annotations

import hashlib
import re

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CACHED_PATHS = re.compile(r"^/collections(/[^/]+(/items/[^/]+)?)?/?$")


class DocumentCacheMiddleware:
    """Tag collection and item documents; answer 304 when the client's tag still matches.

    Plain ASGI rather than Starlette's `BaseHTTPMiddleware`, whose per-request task and streaming
    wrapper cost every request (searches included) ~5% of the process's CPU (py-spy): other
    requests pass straight through."""

    def __init__(self, app: ASGIApp, max_age_s: int) -> None:
        self.app = app
        self.cache_control = f"public, max-age={max_age_s}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; tag a 200 GET of a cached path."""
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or not CACHED_PATHS.match(scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        start: Message = {}
        chunks: list[bytes] = []

        async def tag(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if message["type"] != "http.response.body" or start.get("status") != 200:
                if start:
                    await send(start)
                    start.clear()
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                await self._send_tagged(scope, start, b"".join(chunks), send)

        await self.app(scope, receive, tag)

    async def _send_tagged(self, scope: Scope, start: Message, body: bytes, send: Send) -> None:
        """Send the whole 200 with its ETag, or a 304 when If-None-Match names that tag."""
        etag = f'W/"{hashlib.blake2b(body, digest_size=16).hexdigest()}"'
        headers = MutableHeaders(
            raw=[(k, v) for k, v in start["headers"] if k != b"content-length"]
        )
        headers["ETag"] = etag
        if "private" not in headers.get("cache-control", ""):  # keyed answers stay private
            headers["Cache-Control"] = self.cache_control
        if etag in Headers(scope=scope).get("if-none-match", ""):
            del headers["content-type"]
            await send({**start, "status": 304, "headers": headers.raw})
            await send({"type": "http.response.body", "body": b""})
            return
        headers["Content-Length"] = str(len(body))
        await send({**start, "headers": headers.raw})
        await send({"type": "http.response.body", "body": body})
