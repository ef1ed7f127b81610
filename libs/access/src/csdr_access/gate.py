"""The authentication step every access middleware takes (the catalog's and the tiler's): the
API key a request carries, the principal it names (401 for a bad key), the key's rate limit
(429), and the headers of answers to keyed requests (`Vary`, private caching)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import psycopg
from starlette.datastructures import Headers, MutableHeaders, QueryParams
from starlette.types import Message, Scope, Send

from csdr_access.access import AccessControl, Writer, writing
from csdr_access.keys import api_key_from
from csdr_access.principals import ANONYMOUS, InvalidKey, Principal, TooManyKeyFailures
from csdr_access.ratelimit import RateLimiter


@dataclass(frozen=True)
class Credentials:
    """The API key a request carries (None: anonymous), and whether it came as `?api_key=`
    (then links in the answer must carry it too: a QGIS layer has no headers)."""

    key: str | None
    in_query: bool

    @classmethod
    def of(cls, scope: Scope) -> Credentials:
        """The credentials of an HTTP request's scope."""
        headers = Headers(scope=scope)
        key = api_key_from(headers, QueryParams(scope.get("query_string", b"")))
        return cls(key, key is not None and api_key_from(headers, {}) is None)


@dataclass
class Refused(Exception):
    """The request is answered now: `status` with the node's error shape."""

    status: int
    code: str
    description: str
    headers: dict[str, str] = field(default_factory=dict)

    async def send(self, send: Send) -> None:
        """Answer `{"code", "description"}` with the status and headers."""
        body = {"code": self.code, "description": self.description}
        await send_json(send, self.status, body, self.headers)


async def send_json(
    send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    """A complete JSON answer straight from a middleware."""
    raw_body = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(raw_body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": raw_body})


def _invalid(exc: InvalidKey) -> Refused:
    if isinstance(exc, TooManyKeyFailures):
        retry = RateLimiter.retry_after(exc.retry_after_s)
        return Refused(429, "TooManyRequests", str(exc), {"Retry-After": retry})
    return Refused(401, "Unauthorized", str(exc), {"WWW-Authenticate": "Bearer"})


def client_address(scope: Scope) -> str | None:
    """The caller's address (the proxy's, unless uvicorn is told to trust its forwarded
    headers with --forwarded-allow-ips)."""
    client = scope.get("client")
    return str(client[0]) if client else None


def _too_many(wait_s: float) -> Refused:
    return Refused(
        429,
        "TooManyRequests",
        "rate limit reached; retry later",
        {"Retry-After": RateLimiter.retry_after(wait_s)},
    )


def _limited(
    principal: Principal, limiter: RateLimiter, conn: psycopg.Connection, writer: Writer | None
) -> Principal:
    """The principal, unless its key is past its rate (429); tokens are taken on the primary."""
    if principal.key_prefix:
        with writing(conn, writer) as primary:
            if wait_s := limiter.acquire(primary, principal.key_prefix):
                raise _too_many(wait_s)
    return principal


def authenticate(
    access: AccessControl,
    limiter: RateLimiter,
    conn: psycopg.Connection,
    key: str | None,
    client: str | None = None,
    writer: Writer | None = None,
) -> Principal:
    """The caller `key` names, sent from address `client`, over a psycopg connection (key use
    written through `writer`, see AccessControl.principal); Refused for a bad, revoked or
    expired key (401), past the key's rate limit or after too many bad keys from the address
    (429)."""
    try:
        principal = access.principal(conn, key, client, writer) if key is not None else ANONYMOUS
    except InvalidKey as exc:
        raise _invalid(exc) from None
    return _limited(principal, limiter, conn, writer)


async def authenticate_async(
    access: AccessControl,
    limiter: RateLimiter,
    conn: Any,
    key: str | None,
    client: str | None = None,
    writer: Any = None,
) -> Principal:
    """authenticate() over an asyncpg connection or pool (writes through `writer`)."""
    try:
        principal = await access.principal_async(conn, key, client, writer)
    except InvalidKey as exc:
        raise _invalid(exc) from None
    prefix = principal.key_prefix
    if prefix and (wait_s := await limiter.acquire_async(writer or conn, prefix)):
        raise _too_many(wait_s)
    return principal


def keyed_answers(send: Send, principal: Principal, keep_max_age: bool = False) -> Send:
    """`send` with `Vary: Authorization, X-API-Key` on every answer, and, for an authenticated
    caller, private caching: `private, no-store`, or with `keep_max_age` the answer's own
    Cache-Control made private (no-store kept)."""

    async def send_keyed(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            headers.append("Vary", "Authorization, X-API-Key")
            if principal.authenticated:
                cache = headers.get("cache-control") if keep_max_age else None
                if cache and "no-store" not in cache:
                    headers["Cache-Control"] = cache.replace("public", "private")
                else:
                    headers["Cache-Control"] = "private, no-store"
        await send(message)

    return send_keyed
