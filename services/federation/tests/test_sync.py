"""The sync worker against a real origin feed over HTTP: pages read ahead while one is applied
arrive in order and whole, and an origin serving smaller pages than the worker asks for (an older
node's page_max) is read at its size instead of failing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from conftest import TEMPLATE_DB
from csdr_access.peers import add_peer
from csdr_federation.app import create_app
from csdr_federation.settings import Settings
from csdr_federation.sync import Worker
from csdr_service import pools
from infra.local.pgcluster import Cluster
from services.federation.tests.conftest import stac_item
from tests.support.servers import served

pytestmark = pytest.mark.slow  # an origin served over HTTP, a second database


@pytest.fixture
def partner(pg_cluster: Cluster) -> Iterator[str]:
    """A second fresh database: the partner node's."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg_cluster.create_database(name, template=TEMPLATE_DB)
    yield name
    with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def sync_all(settings: Settings) -> int:
    pool = await pools.open_pool(2, "test", pgstac=True)
    worker = Worker(pool, settings)
    try:
        return await worker.sync("main")
    finally:
        await worker.client.aclose()
        await pool.close()


def test_an_origin_with_smaller_pages_is_read_at_its_size(
    pg_cluster: Cluster,
    partner: str,
    keys: dict[str, str],
    upsert: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upsert(*(stac_item(f"S{n}") for n in range(5)))
    origin = Settings(worker=False, node_name="main", catalog_url="http://main.example")
    origin.page_max = 2
    with served(create_app(origin), ready_path="/healthz") as url:
        with psycopg.connect(pg_cluster.conninfo(partner), autocommit=True) as conn:
            add_peer(conn, "main", url, keys["partner"], "test")
        monkeypatch.setenv("PGDATABASE", partner)
        pages = asyncio.run(sync_all(Settings(worker=False, node_name="la", page_size=1000)))
    # Two collections and five items: seven events, in pages of two.
    assert pages == 4
    with psycopg.connect(pg_cluster.conninfo(partner), autocommit=True) as conn:
        held = conn.execute("SELECT id FROM pgstac.items ORDER BY id").fetchall()
        peer: Any = conn.execute("SELECT at_head, applied FROM csdr.federation_peers").fetchone()
    assert [r[0] for r in held] == [f"S{n}" for n in range(5)]
    assert peer == (True, 5)  # items applied (collections are not counted)
