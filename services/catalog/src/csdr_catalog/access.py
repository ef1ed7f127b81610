"""Who may see what in the STAC API.

A middleware turns the request's API key into a principal and the set of collections it may see
(csdr_access's one rule) and answers: 401 for a bad key; 429 past a key's rate limit; 404 for any
`/collections/{id}...` path whose collection is invisible (as if it did not exist); 401/403 for
catalogue writes without the `ingest` scope (`/account` and `/admin` judge their callers). It
marks answers to keyed requests `Cache-Control: private` and, when the key came as `?api_key=`,
carries it into every link to this node in the answer (next pages, items, downloads, tiles).
The client then limits searches, aggregations, the collections list and the landing page to the
visible collections.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from csdr_access import ANONYMOUS, AccessControl, Principal
from csdr_access.gate import (
    Credentials,
    Refused,
    authenticate_async,
    client_address,
    keyed_answers,
)
from csdr_access.links import key_carrying_send
from csdr_access.ratelimit import RateLimiter

# Paths that say nothing about the catalog's contents.
OPEN_PATHS = ("/healthz", "/readyz", "/api", "/api.html", "/docs", "/_mgmt/ping")
# POST routes that only read.
READ_POSTS = ("/search", "/aggregate")
# Routes that judge their caller themselves (a key's organisation and scopes), not by `ingest`.
OWN_JUDGES = ("/account", "/admin")
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
        credentials = Credentials.of(scope)
        state = scope["app"].state
        pool = state.readpool
        try:
            principal = await authenticate_async(
                self.access,
                self.limiter,
                pool,
                credentials.key,
                client_address(scope),
                getattr(state, "writepool", None),
            )
        except Refused as refused:
            await refused.send(send)
            return
        visible = None if principal.is_admin else await self.access.visible_async(pool, principal)
        collection = _collection_in(path)
        if collection is not None and visible is not None and collection not in visible:
            # Perhaps created after the cached list was made: ask once more, uncached.
            visible = await self.access.visible_async(pool, principal, fresh=True)
        if collection is not None and visible is not None and collection not in visible:
            missing = f"Collection {collection} does not exist."
            await Refused(404, "NotFoundError", missing).send(send)
            return
        if (
            self.writes
            and scope["method"] in WRITE_METHODS
            and not path.endswith(READ_POSTS)
            and not path.startswith(OWN_JUDGES)
        ):
            if not principal.authenticated:
                await Refused(
                    401,
                    "Unauthorized",
                    "writing needs an API key with the ingest scope",
                    {"WWW-Authenticate": "Bearer"},
                ).send(send)
                return
            if not principal.can("ingest"):
                await Refused(403, "Forbidden", "this API key lacks the ingest scope").send(send)
                return
        scope.setdefault("state", {}).update(principal=principal, visible=visible)

        send_private = keyed_answers(send, principal)
        if credentials.in_query:
            assert credentials.key is not None
            own = (str(Request(scope).base_url), *self.linked_urls)
            await self.app(scope, receive, key_carrying_send(send_private, credentials.key, own))
            return
        await self.app(scope, receive, send_private)
