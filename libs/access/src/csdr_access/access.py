"""The access checks every service makes, over psycopg (tiler, ingest) or asyncpg (catalog, push),
with the same SQL and a short cache: a revoked key or a changed policy takes effect within
`ttl_s` seconds everywhere. Key guessing is slowed per client address, node-wide: an address
that sent `max_failures` invalid keys within `window_s` is refused before its keys are checked
(`CSDR_ACCESS_MAX_KEY_FAILURES`, `CSDR_ACCESS_KEY_FAILURE_WINDOW_S`)."""

import threading
import time
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import psycopg
from pydantic_settings import BaseSettings, SettingsConfigDict

from csdr_access.keys import digest, prefix_of
from csdr_access.policies import VISIBLE_SQL
from csdr_access.principals import (
    ANONYMOUS,
    KEY_FAILURES_SQL,
    KEY_SQL,
    RECORD_KEY_FAILURE_SQL,
    TOUCH_SQL,
    InvalidKey,
    Principal,
    TooManyKeyFailures,
    principal_from,
)

# Opens a connection on the primary for the checks' writes (a psycopg pool's `connection`).
Writer = Callable[[], AbstractContextManager[psycopg.Connection]]


def writing(conn: psycopg.Connection, writer: Writer | None) -> AbstractContextManager[Any]:
    """A connection for a write: `writer`'s, else `conn` itself."""
    return writer() if writer is not None else nullcontext(conn)


class KeyFailureLimit(BaseSettings):
    """How many invalid keys a client address may send before its keys are refused unchecked
    (0: no limit), and over how long."""

    model_config = SettingsConfigDict(env_prefix="CSDR_ACCESS_")

    max_key_failures: int = 20
    key_failure_window_s: float = 600.0


def _visible_args(p: Principal) -> tuple[bool, bool, int | None]:
    return (p.is_admin, p.authenticated, p.org_id)


class AccessControl:
    """Authenticate keys and list visible collections, cached for `ttl_s` seconds."""

    def __init__(
        self, ttl_s: float = 2.0, max_entries: int = 10_000, failures: KeyFailureLimit | None = None
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.failures = failures or KeyFailureLimit()
        self._cache: dict[Hashable, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def _get(self, key: Hashable) -> Any:
        with self._lock:
            hit = self._cache.get(key)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def _put(self, key: Hashable, value: Any) -> Any:
        with self._lock:
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            self._cache[key] = (time.monotonic() + self.ttl_s, value)
        return value

    @staticmethod
    def _raise_or_return(result: Principal | InvalidKey) -> Principal:
        if isinstance(result, InvalidKey):
            raise result
        return result

    def principal(
        self,
        conn: psycopg.Connection,
        key: str | None,
        client: str | None = None,
        writer: Writer | None = None,
    ) -> Principal:
        """The caller for `key` (anonymous when None) sent from address `client`; raises
        InvalidKey, TooManyKeyFailures when `client` sent too many invalid keys lately. Key use
        and failures are written through `writer()` (the primary, when `conn` is a read
        replica's), else on `conn`."""
        if key is None:
            return ANONYMOUS
        cached = self._get(("key", digest(key)))
        if cached is None:
            limit, window = self.failures.max_key_failures, self.failures.key_failure_window_s
            if client and limit:
                with psycopg.RawCursor(conn) as cur:
                    failures = cur.execute(KEY_FAILURES_SQL, (client, window)).fetchone()
                if failures is not None and failures[0] >= limit:
                    raise TooManyKeyFailures(failures[0], window)
            row = None
            if prefix := prefix_of(key):
                with psycopg.RawCursor(conn) as cur:
                    row = cur.execute(KEY_SQL, (prefix,)).fetchone()
            try:
                cached = principal_from(key, row)
                with writing(conn, writer) as wconn, psycopg.RawCursor(wconn) as cur:
                    cur.execute(TOUCH_SQL, (prefix,))
            except InvalidKey as exc:
                if client and limit:
                    with writing(conn, writer) as wconn, psycopg.RawCursor(wconn) as cur:
                        cur.execute(RECORD_KEY_FAILURE_SQL, (client, window))
                cached = exc
            self._put(("key", digest(key)), cached)
        return self._raise_or_return(cached)

    async def principal_async(
        self, conn: Any, key: str | None, client: str | None = None, writer: Any = None
    ) -> Principal:
        """principal() over an asyncpg connection or pool; writes through `writer` (a pool or
        connection on the primary) when given."""
        writer = writer or conn
        if key is None:
            return ANONYMOUS
        cached = self._get(("key", digest(key)))
        if cached is None:
            limit, window = self.failures.max_key_failures, self.failures.key_failure_window_s
            if client and limit:
                failures = await conn.fetchval(KEY_FAILURES_SQL, client, window)
                if failures >= limit:
                    raise TooManyKeyFailures(failures, window)
            prefix = prefix_of(key)
            row = await conn.fetchrow(KEY_SQL, prefix) if prefix else None
            try:
                cached = principal_from(key, row)
                await writer.execute(TOUCH_SQL, prefix)
            except InvalidKey as exc:
                if client and limit:
                    await writer.execute(RECORD_KEY_FAILURE_SQL, client, window)
                cached = exc
            self._put(("key", digest(key)), cached)
        return self._raise_or_return(cached)

    def visible(
        self, conn: psycopg.Connection, principal: Principal, fresh: bool = False
    ) -> frozenset[str]:
        """The collections `principal` may see (`fresh`: bypass the cache, e.g. for a
        collection created a moment ago)."""
        args = _visible_args(principal)
        cached = None if fresh else self._get(("visible", args))
        if cached is None:
            with psycopg.RawCursor(conn) as cur:
                rows = cur.execute(VISIBLE_SQL, args).fetchall()
            cached = self._put(("visible", args), frozenset(r[0] for r in rows))
        return cached

    async def visible_async(
        self, conn: Any, principal: Principal, fresh: bool = False
    ) -> frozenset[str]:
        """visible() over an asyncpg connection or pool."""
        args = _visible_args(principal)
        cached = None if fresh else self._get(("visible", args))
        if cached is None:
            rows = await conn.fetch(VISIBLE_SQL, *args)
            cached = self._put(("visible", args), frozenset(r[0] for r in rows))
        return cached
