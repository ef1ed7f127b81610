"""The catalog's database pools, made as stac-fastapi-pgstac makes them but opened by our lifespan
so that the read pool's sessions carry settings for item search (measured at a million items by
tests/bench/bench_catalog.py, on the 2-core machines this node targets):

- `max_parallel_workers_per_gather = 0`: a page of 10 items never needs parallel workers, and
  launching them (Gather Merge over four year partitions) cost 25-35 ms of a bbox + date + cloud
  search that runs in ~20 ms without them;
- `cpu_index_tuple_cost = 0.02` (PostgreSQL's default is 0.005): at the default the planner ANDs
  the datetime index into a bbox + date + cloud search (a bitmap over the ~25,000 entries of a
  half-year range, ~3 ms per partition) where the footprint and cloud bitmaps alone leave ~150
  rows to check: 20-25 ms -> 6-10 ms for the rows of that search. The seven benchmark queries'
  other plans stay the same;
- `pgstac.readonly = true`: pgSTAC otherwise records every search in `pgstac.searches` (an
  INSERT or UPDATE, WAL and a row lock per request) for its search cache, which the catalog never
  reads: searches are planned anew each time anyway. `counts.py` turns it off for the one cache
  it uses (`search_wheres`, numberMatched).

Read connections also skip asyncpg's reset query on release (`RESET ALL`, `UNLISTEN *`, ...: one
more round trip for each of the two or three connections a request takes): nothing on the read
pool changes session state, and asyncpg still ends any open transaction. The write pool
(transactions; API key use when reads go to a standby, csdr_service.replicas) keeps
PostgreSQL's, pgSTAC's and asyncpg's defaults. The pools are made as
stac-fastapi-pgstac's `connect_to_db` makes them (its settings, its `con_init`, its
`get_connection`), which has no parameter for a connection class.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import asyncpg
from fastapi import FastAPI
from stac_fastapi.pgstac.config import PostgresSettings, ServerSettings
from stac_fastapi.pgstac.db import close_db_connection, con_init, get_connection

from csdr_service.replicas import ReadReplica

# Session settings of the read pool (see the module docstring); pgSTAC reads `pgstac.*` settings
# from the session before its `pgstac_settings` table (pgstac.get_setting).
READ_SESSION_SETTINGS = {
    "max_parallel_workers_per_gather": "0",
    "cpu_index_tuple_cost": "0.02",
    "pgstac.readonly": "true",
}


CONNECT_TIMEOUT_S = 3.0


def read_pool_settings(env: Mapping[str, str] | None = None) -> PostgresSettings:
    """The libpq `PG*` database (or the one a `PG*` block `env` names) with the read session
    settings added."""
    # Fields come from the PG* variables unless given.
    settings = PostgresSettings(**{k.lower(): v for k, v in (env or {}).items()})
    server = settings.server_settings.model_dump()
    settings.server_settings = ServerSettings(**{**server, **READ_SESSION_SETTINGS})
    return settings


async def read_connection(settings: PostgresSettings) -> asyncpg.Connection:
    """One connection made as the read pool makes its connections (`read_pool_settings`), for
    the tests and benchmarks that compare or time the catalog's own SQL."""
    conn = await asyncpg.connect(
        settings.connection_string,
        server_settings=settings.server_settings.model_dump(),
        connection_class=ReadConnection,
    )
    await con_init(conn)
    return conn


class ReadConnection(asyncpg.Connection):
    """A read pool connection: released without asyncpg's reset query (see the module docstring)."""

    def get_reset_query(self) -> str:
        """No reset query: read connections keep their session settings as opened."""
        return ""


async def create_pool(
    settings: PostgresSettings, connection_class: type[asyncpg.Connection] = asyncpg.Connection
) -> asyncpg.Pool:
    """A pool as stac-fastapi-pgstac makes it, with our connection class."""
    return await asyncpg.create_pool(
        settings.connection_string,
        # Opening a connection to a host that is down fails a request (503), not hangs it.
        timeout=CONNECT_TIMEOUT_S,
        min_size=settings.db_min_conn_size,
        max_size=settings.db_max_conn_size,
        max_queries=settings.db_max_queries,
        max_inactive_connection_lifetime=settings.db_max_inactive_conn_lifetime,
        init=con_init,
        server_settings=settings.server_settings.model_dump(),
        connection_class=connection_class,
    )


def lifespan(
    writes: bool, replica: ReadReplica | None = None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Open the pools for the app's life: the read pool on `replica` when one is configured
    (else on the primary), and a write pool on the primary when `writes` (transactions) or
    when reads go to a replica (API key use is written)."""
    on_replica = replica is not None and replica.configured

    @asynccontextmanager
    async def pools(app: FastAPI) -> AsyncIterator[None]:
        read_env = replica.pg_env() if replica is not None and on_replica else None
        read_settings = read_pool_settings(read_env)
        app.state.reads_on_replica = on_replica
        app.state.readpool = await create_pool(read_settings, ReadConnection)
        if writes or on_replica:
            app.state.writepool = await create_pool(PostgresSettings())
        app.state.get_connection = get_connection
        try:
            yield
        finally:
            await close_db_connection(app)

    return pools
