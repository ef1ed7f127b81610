"""The asyncpg pool of the services on asyncpg (push, discovery, federation): opened from the
libpq `PG*` variables with json/jsonb exchanged as Python objects, and the dependency that hands
it to routes (the catalog's pools are stac-fastapi-pgstac's)."""

from __future__ import annotations

import json
from typing import Annotated

import asyncpg
from fastapi import Depends, Request


async def _init_connection(conn: asyncpg.Connection) -> None:
    """Exchange json/jsonb as Python objects."""
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Return a connection to the pool as it is (asyncpg has rolled back an open transaction)."""


async def open_pool(
    max_size: int, application_name: str, pgstac: bool = False, reset_session: bool = True
) -> asyncpg.Pool:
    """A pool on the database named by the PG* variables; `pgstac`: pgSTAC's schema first on
    the search path (its functions call their helpers by bare name). `reset_session=False`
    skips asyncpg's reset round trip at each release (`RESET ALL`, `UNLISTEN *`, advisory
    locks, cursors): only for a service that keeps no session state on its pooled
    connections."""
    settings = {"application_name": application_name}
    if pgstac:
        settings["search_path"] = "pgstac, public"
    return await asyncpg.create_pool(
        min_size=1,
        max_size=max_size,
        init=_init_connection,
        server_settings=settings,
        reset=None if reset_session else _keep_session,
    )


async def connect(application_name: str) -> asyncpg.Connection:
    """One connection outside the pool (a LISTEN connection)."""
    conn = await asyncpg.connect(server_settings={"application_name": application_name})
    await _init_connection(conn)
    return conn


async def get_pool(request: Request) -> asyncpg.Pool:
    """The service's database pool (opened in the lifespan, kept in `app.state.pool`); async
    because it blocks on nothing: FastAPI runs a plain function dependency in a worker thread."""
    return request.app.state.pool


PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]
