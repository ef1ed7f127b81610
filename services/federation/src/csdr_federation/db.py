"""The asyncpg pool (libpq `PG*` variables) and the dependency that hands it to routes."""

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


async def open_pool(max_size: int) -> asyncpg.Pool:
    """A pool on the database named by the PG* variables."""
    return await asyncpg.create_pool(
        min_size=1,
        max_size=max_size,
        init=_init_connection,
        # pgSTAC's content_hydrate() calls its helpers by their bare names.
        server_settings={"application_name": "csdr-federation", "search_path": "pgstac, public"},
    )


def get_pool(request: Request) -> asyncpg.Pool:
    """The service's database pool (opened in the lifespan)."""
    return request.app.state.pool


PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]
