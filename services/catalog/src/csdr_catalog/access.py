"""Who may see what in the STAC API.

A middleware turns the request's API key into a principal and the set of collections it may see
(csdr_access's one rule) and answers: 401 for a bad key; 429 past a key's rate limit; 404 for any
`/collections/{id}...` path whose collection is invisible (as if it did not exist); 401/403 for
writes without the `ingest` scope. It marks answers to keyed requests `Cache-Control: private`
and, when the key came as `?api_key=`, carries it into every link to this node in the answer
(next pages, items, downloads, tiles).
The client then limits searches, aggregations, the collections list and the landing page to the
visible collections.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from starlette.datastructures import Headers, MutableHeaders, QueryParams
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from csdr_access import ANONYMOUS, AccessControl, InvalidKey, Principal, api_key_from
from csdr_access.links import key_carrying_send
from csdr_access.ratelimit import RateLimiter

# Paths that say nothing about the catalog's contents.
OPEN_PATHS = ("/healthz", "/readyz", "/api", "/api.html", "/docs", "/_mgmt/ping")
# POST routes that only read.
READ_POSTS = ("/search", "/aggregate")
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def principal_of(request: Any) -> Principal:
    """The principal the middleware found for this request."""
    return getattr(request.state, "principal", ANONYMOUS)


def visible_of(request: Any) -> frozenset[str] | None:
    """The collections this request may see; None means all (an administrator)."""
    return getattr(request.state, "visible", frozenset())


def restrict(asked: list[str] | None, visible: frozenset[str] | None) -> list[str] | None:
    """The collections a search may touch: those asked for (or all) that are visible."""
    if visible is None:
        return asked
    return sorted(visible.intersection(asked) if asked else visible)


def _collection_in(path: str) -> str | None:
    """The collection id of a `/collections/{id}[/...]` path."""
    parts = path.split("/")
    return unquote(parts[2]) if len(parts) > 2 and parts[1] == "collections" and parts[2] else None


async def _send_error(
    send: Send, status: int, code: str, description: str, headers: dict[str, str] | None = None
) -> None:
    body = json.dumps({"code": code, "description": description}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class AccessMiddleware:
    """Apply the access rule to every request (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        access: AccessControl,
        limiter: RateLimiter,
        writes: bool,
        linked_urls: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.access = access
        self.limiter = limiter
        self.writes = writes  # the transactions extension is served: writes need `ingest`
        self.linked_urls = linked_urls  # other services of this node we link to (the tiler)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Authenticate, check the path, then pass on with the principal in request.state."""
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(OPEN_PATHS):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        key = api_key_from(headers, QueryParams(scope.get("query_string", b"")))
        key_in_query = key is not None and api_key_from(headers, {}) is None
        pool = scope["app"].state.readpool
        try:
            principal = await self.access.principal_async(pool, key)
        except InvalidKey as exc:
            await _send_error(send, 401, "Unauthorized", str(exc), {"WWW-Authenticate": "Bearer"})
            return
        wait_s = self.limiter.acquire(principal.key_prefix) if principal.key_prefix else 0.0
        if wait_s:
            await _send_error(
                send,
                429,
                "TooManyRequests",
                "rate limit reached; retry later",
                {"Retry-After": RateLimiter.retry_after(wait_s)},
            )
            return
        visible = None if principal.is_admin else await self.access.visible_async(pool, principal)
        collection = _collection_in(path)
        if collection is not None and visible is not None and collection not in visible:
            # Perhaps created after the cached list was made: ask once more, uncached.
            visible = await self.access.visible_async(pool, principal, fresh=True)
        if collection is not None and visible is not None and collection not in visible:
            await _send_error(
                send, 404, "NotFoundError", f"Collection {collection} does not exist."
            )
            return
        if self.writes and scope["method"] in WRITE_METHODS and not path.endswith(READ_POSTS):
            if not principal.authenticated:
                await _send_error(
                    send,
                    401,
                    "Unauthorized",
                    "writing needs an API key with the ingest scope",
                    {"WWW-Authenticate": "Bearer"},
                )
                return
            if not principal.can("ingest"):
                await _send_error(send, 403, "Forbidden", "this API key lacks the ingest scope")
                return
        scope.setdefault("state", {}).update(principal=principal, visible=visible)

        async def send_private(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.append("Vary", "Authorization, X-API-Key")
                if principal.authenticated:
                    headers["Cache-Control"] = "private, no-store"
            await send(message)

        if key_in_query:
            assert key is not None
            own = (str(Request(scope).base_url), *self.linked_urls)
            await self.app(scope, receive, key_carrying_send(send_private, key, own))
            return
        await self.app(scope, receive, send_private)
