"""The tiler's database pools. titiler-pgstac reads everything through `app.state.dbpool`; with
a read replica configured (csdr_service.replicas) that pool is on the standby, and a second
pool on the primary (`app.state.csdr_writepool`) takes what the tiler writes: pyramid tiles and
search layers, API key use, the searches registered for collection mosaics. `ReadWritePool`
lends titiler-pgstac the primary's connections for the requests `ON_PRIMARY` marks
(`PrimaryRequests`): `POST /searches/register` (a write), and mosaics, which pgSTAC reads with
`geometrysearch`: it creates a temporary table, and a hot standby refuses that (PostgreSQL runs
no writes of any kind during recovery; pgSTAC 0.9/0.10). Items, their tiles, the STAC lookups
behind them and the search list are read from the standby. Without a replica both pools are
the primary's one pool.

A registration is answered once the standby has replayed it (`ReadWritePool.wait_replayed`):
the next request, checked against the standby by the access middleware, finds the search. A
pool waits at most `WAIT_S` for a connection, and a standby more than `WAIT_S` behind fails the
registration: a database that went away answers 503 (csdr_service.errors), never a request held
until its time limit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from psycopg import Connection
from psycopg_pool import ConnectionPool
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from titiler.pgstac.db import connect_to_db
from titiler.pgstac.settings import PostgresSettings

from csdr_service.replicas import ReadReplica
from csdr_tiler.paths import MOSAIC_PATH, SEARCH_REGISTER_PATH

WAIT_S = 5.0
WRITE_POOL_MAX = 4

REPLAYED_SQL = "SELECT coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, true)"

# True while a request that must use the primary through titiler-pgstac's pool is answered.
ON_PRIMARY: ContextVar[bool] = ContextVar("csdr_tiler_on_primary", default=False)


class ReadWritePool:
    """titiler-pgstac's `dbpool` when reads go to a standby: the standby's pool, except that a
    connection taken while ON_PRIMARY is the primary's. Everything else is the read pool's."""

    def __init__(self, read: ConnectionPool, write: ConnectionPool) -> None:
        """Lend `read`'s connections, or `write`'s for a request that writes."""
        self.read = read
        self.write = write

    def wait_replayed(self, timeout_s: float = WAIT_S) -> None:
        """Return once the standby has replayed what the primary has written so far;
        TimeoutError (a 503) after `timeout_s`."""
        # Inserted, not only written: with synchronous_commit off, a commit may be unwritten.
        with self.write.connection() as conn:
            [[lsn]] = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchall()
        deadline = time.monotonic() + timeout_s
        with self.read.connection() as conn:
            # NULL when the server is no standby (a host list fell back to the primary).
            while not conn.execute(REPLAYED_SQL, (lsn,)).fetchall()[0][0]:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the read replica is more than {timeout_s:g} s behind")
                time.sleep(0.01)

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[Connection[Any]]:
        """A connection of the pool the request needs (psycopg_pool's `connection`)."""
        pool = self.write if ON_PRIMARY.get() else self.read
        with pool.connection(timeout) as conn:
            yield conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self.read, name)


class PrimaryRequests:
    """Mark the requests titiler-pgstac must answer from the primary (see the module docstring),
    and answer a registration once the standby has it."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap `app`."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on with ON_PRIMARY set when it needs the primary (the route's
        thread gets a copy of this context)."""
        pool = scope["app"].state.dbpool if scope["type"] == "http" else None
        if not isinstance(pool, ReadWritePool):
            await self.app(scope, receive, send)
            return
        registers = scope["method"] == "POST" and scope["path"] == SEARCH_REGISTER_PATH
        if not registers and MOSAIC_PATH.match(scope["path"]) is None:
            await self.app(scope, receive, send)
            return
        replica = pool

        async def replayed_first(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 300:
                await anyio.to_thread.run_sync(replica.wait_replayed)
            await send(message)

        token = ON_PRIMARY.set(True)
        try:
            await self.app(scope, receive, replayed_first if registers else send)
        finally:
            ON_PRIMARY.reset(token)


async def open_pools(
    app: FastAPI, pool_kwargs: dict[str, Any]
) -> tuple[ConnectionPool, ConnectionPool]:
    """Open titiler-pgstac's pool (on the replica when configured) and the write pool; return
    (read pool, write pool), the same pool twice without a replica."""
    replica = ReadReplica()
    if not replica.configured:
        await connect_to_db(app, pool_kwargs=pool_kwargs)
        pool: ConnectionPool = app.state.dbpool
        pool.timeout = WAIT_S
        app.state.csdr_writepool = None
        return pool, pool
    on_standby = {**pool_kwargs, "connect_timeout": replica.connect_timeout_s}
    # pgSTAC writes nothing on the standby (its search cache, counts): it takes no writes.
    on_standby["options"] = pool_kwargs.get("options", "") + " -c pgstac.readonly=true"
    settings = PostgresSettings(**{k.lower(): v for k, v in replica.pg_env().items()})
    await connect_to_db(app, settings=settings, pool_kwargs=on_standby)
    read: ConnectionPool = app.state.dbpool
    read.timeout = WAIT_S
    # The primary from the libpq PG* variables, as every other pool of the node.
    write = ConnectionPool(
        kwargs=pool_kwargs, min_size=1, max_size=WRITE_POOL_MAX, timeout=WAIT_S, open=True
    )
    app.state.dbpool = ReadWritePool(read, write)
    app.state.csdr_writepool = write
    return read, write


def close_pools(app: FastAPI) -> None:
    """Close what open_pools opened."""
    pool = app.state.dbpool
    if isinstance(pool, ReadWritePool):
        pool.read.close()
        pool.write.close()
    else:
        pool.close()


def primary_pool(app: FastAPI) -> ConnectionPool:
    """The pool that writes: the primary's."""
    pool: ConnectionPool = app.state.csdr_writepool or app.state.dbpool
    return pool
