"""Who may see which tiles: csdr_access's one rule on every tiler path.

A middleware turns the request's API key (Bearer, X-API-Key or `?api_key=`, which QGIS XYZ layers
need) into a principal and the collections it may see, and answers:
- 401 `{"code", "description"}` for a bad, revoked or expired key; 429 past a key's rate limit;
- 404 for `/collections/{id}/...` (items, mosaics, presets, WMTS) whose collection is invisible,
  with the body a nonexistent one gets (both are answered here, so they cannot differ);
- 404 for `/searches/{id}/...` when the search names collections and the caller sees none of
  them; its `/info` (which shows the search's collection list and SQL) also when it names any
  invisible one. Every mosaic is further filtered at tile time (csdr_tiler.mosaics).
It marks answers to keyed requests `Cache-Control: private`, tells the item response cache who
may share a cached answer and the item's version (read in the same visit to the database), and,
when the key came as `?api_key=`, adds it to the links of the search register, list and info
answers (TileJSON and WMTS documents copy the query already). The whole decision takes one
worker-thread hop and one pooled connection per request.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlencode

import anyio.to_thread
from psycopg import Connection
from psycopg_pool import ConnectionPool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from csdr_access import ANONYMOUS, AccessControl, Principal
from csdr_access.access import Writer
from csdr_access.gate import (
    Credentials,
    Refused,
    authenticate,
    client_address,
    keyed_answers,
    send_json,
)
from csdr_access.links import key_carrying_send
from csdr_access.ratelimit import RateLimiter
from csdr_tiler.context import context_of
from csdr_tiler.items import Catalogue, ItemNotFound, ItemVersion
from csdr_tiler.paths import (
    COLLECTION_PATH,
    NOT_SEARCH_IDS,
    OPEN_PATHS,
    SEARCH_LIST_PATHS,
    SEARCH_PATH,
    has_links,
)

logger = logging.getLogger(__name__)

SEARCH_COLLECTIONS_SQL = "SELECT search -> 'collections' FROM pgstac.searches WHERE hash = %s"


def search_collections(pool: ConnectionPool, search_id: str) -> tuple[bool, list[str] | None]:
    """(exists, the collections the registered search names, or None when it names none)."""
    with pool.connection() as conn:
        return named_collections(conn, search_id)


def named_collections(conn: Connection[Any], search_id: str) -> tuple[bool, list[str] | None]:
    """search_collections() on a connection already in hand."""
    row = conn.execute(SEARCH_COLLECTIONS_SQL, (search_id,)).fetchone()
    if row is None:
        return False, None
    return True, [str(c) for c in row[0]] if row[0] else None


@dataclass
class Verdict:
    """What the middleware does with a request: answer it now (`status`, `body`, `headers`), or
    pass it on with what it found (the principal, what it may see, who may share cached
    answers, the item's version)."""

    principal: Principal = ANONYMOUS
    visible: frozenset[str] | None = field(default_factory=frozenset)
    cache_audience: str | None = None
    item_version: ItemVersion | None = None
    status: int | None = None
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


# A refusal depends on the key and on policies that change: no cache may keep it (a CDN's
# default error caching would otherwise answer a keyed request with an anonymous 404).
REFUSAL_HEADERS = {"Cache-Control": "no-store", "Vary": "Authorization, X-API-Key"}


def refusal(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Verdict:
    """A verdict that answers the request with `status` and `body`, for no cache to keep."""
    return Verdict(status=status, body=body, headers={**REFUSAL_HEADERS, **(headers or {})})


class Judge:
    """The database side of the middleware: one call per request, run in a worker thread
    (psycopg's pool is sync) on one connection of the pool."""

    def __init__(
        self,
        catalogue: Catalogue,
        access: AccessControl,
        limiter: RateLimiter,
        writer: Writer | None = None,
    ) -> None:
        """Check keys and visibility through the catalogue's pool with `access`'s cache, rates
        with `limiter`, key use written through `writer` (the primary's pool, when the
        catalogue reads a standby); read item versions through `catalogue`."""
        self.catalogue = catalogue
        self.pool = catalogue.pool
        self.writer = writer
        self.access = access
        self.limiter = limiter

    def verdict(self, key: str | None, path: str, client: str | None = None) -> Verdict:
        """Judge a request for `path` with API key `key` from address `client` (see the module
        docstring)."""
        with self.pool.connection() as conn:
            return self._verdict(conn, key, path, client)

    def _verdict(
        self, conn: Connection[Any], key: str | None, path: str, client: str | None
    ) -> Verdict:
        try:
            principal = authenticate(self.access, self.limiter, conn, key, client, self.writer)
        except Refused as refused:
            return refusal(
                refused.status,
                {"code": refused.code, "description": refused.description},
                refused.headers,
            )
        verdict = Verdict(principal)
        if (found := COLLECTION_PATH.match(path)) is not None:
            collection = unquote(found["collection"])
            if not self._sees_collection(conn, principal, collection):
                if found["item"] is not None:
                    detail = f"no item '{unquote(found['item'])}' in collection '{collection}'"
                else:
                    detail = f"no collection '{collection}'"
                return refusal(404, {"detail": detail})
            if found["item"] is not None:
                # Who may share the item response cache's answers: everyone for a public
                # collection, else only the same key.
                public = collection in self.access.visible(conn, ANONYMOUS)
                verdict.cache_audience = "public" if public else f"key:{principal.key_prefix}"
                # The item's version, which the response cache and the routes need, read on
                # this connection rather than in a thread hop of their own (none: no such item,
                # the route answers the 404).
                with contextlib.suppress(ItemNotFound):
                    verdict.item_version = self.catalogue.item_version(
                        collection, unquote(found["item"]), conn
                    )
        elif (found := SEARCH_PATH.match(path)) is not None and found["search"] not in (
            NOT_SEARCH_IDS
        ):
            search_id = found["search"]
            if not self._sees_search(conn, principal, search_id, found["rest"] == "/info"):
                return refusal(404, {"detail": f"no registered search '{search_id}'"})
        verdict.visible = None if principal.is_admin else self.access.visible(conn, principal)
        return verdict

    def _sees_collection(
        self, conn: Connection[Any], principal: Principal, collection: str
    ) -> bool:
        """Whether the collection exists and is visible (uncached when the cache says no:
        perhaps it was created a moment ago)."""
        return collection in self.access.visible(
            conn, principal
        ) or collection in self.access.visible(conn, principal, fresh=True)

    def _sees_search(
        self, conn: Connection[Any], principal: Principal, search_id: str, metadata: bool
    ) -> bool:
        """Whether the caller may use the registered search: it exists, and it names no
        collection or a visible one (`metadata`, for /info: only visible ones); uncached when
        the cache says no, as for a collection (perhaps one created a moment ago)."""
        exists, named = named_collections(conn, search_id)
        if not exists:
            return False
        if principal.is_admin or not named:
            return True

        def sees(visible: frozenset[str]) -> bool:
            return set(named) <= visible if metadata else bool(visible.intersection(named))

        return sees(self.access.visible(conn, principal)) or sees(
            self.access.visible(conn, principal, fresh=True)
        )


class AccessMiddleware:
    """Apply the access rule to every request (see the module docstring)."""

    def __init__(self, app: ASGIApp, access: AccessControl, limiter: RateLimiter) -> None:
        """Wrap `app`; keys and visibility are checked with `access`, rates with `limiter`."""
        self.app = app
        self.access = access
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Authenticate, check the path, then pass on with the principal in the request state."""
        path: str = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or path.startswith(OPEN_PATHS):
            await self.app(scope, receive, send)
            return
        credentials = Credentials.of(scope)
        state = scope["app"].state
        writes = state.csdr_writepool.connection if state.csdr_writepool is not None else None
        judge = Judge(state.csdr_catalogue, self.access, self.limiter, writes)
        # One worker-thread hop for the whole decision: each hop costs the event loop ~0.3 ms
        # of GIL under load, and the principal, the path and the visibility need one connection.
        verdict = await anyio.to_thread.run_sync(
            judge.verdict, credentials.key, path, client_address(scope)
        )
        if verdict.status is not None:
            await send_json(send, verdict.status, verdict.body, verdict.headers)
            return
        context = context_of(scope)
        context.judged = True
        context.principal = verdict.principal
        context.visible = verdict.visible
        context.cache_audience = verdict.cache_audience
        context.item_version = verdict.item_version
        key = credentials.key
        if credentials.in_query and path in SEARCH_LIST_PATHS:
            # Upstream's list route takes every other query parameter as a metadata filter.
            query = QueryParams(scope.get("query_string", b""))
            rest = [(k, v) for k, v in query.multi_items() if k != "api_key"]
            scope["query_string"] = urlencode(rest).encode()
        sender = keyed_answers(send, verdict.principal, keep_max_age=True)
        if credentials.in_query and has_links(path):
            sender = key_carrying_send(sender, str(key), (str(Request(scope).base_url),))
        await self.app(scope, receive, sender)
