"""Orders test fixtures: a database holding collection `gf1` with online scenes whose data files
exist, keys of three organisations (two partners and the node's administrator), the orders app
on a clock the test moves, and the catalog (whose downloads charge quotas) on the same clock."""

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from csdr_access.admin import add_org, issue_key
from csdr_catalog.app import create_app as create_catalog
from csdr_catalog.settings import Settings as CatalogSettings
from csdr_orders.app import create_app
from csdr_orders.settings import Settings
from services.orders.tests.samples import COLLECTION, ORGS, Clock, stac_item


@pytest.fixture
def db(pg_env: dict[str, str]) -> Iterator[psycopg.Connection]:
    """An autocommit connection to a fresh database holding the collection `gf1`."""
    with psycopg.connect(autocommit=True) as conn:
        conn.execute("SELECT pgstac.create_collection(%s)", (Jsonb(COLLECTION),))
        yield conn


@pytest.fixture
def assets(tmp_path: Path) -> Path:
    folder = tmp_path / "assets"
    folder.mkdir()
    return folder


@pytest.fixture
def scenes(db: psycopg.Connection, assets: Path) -> list[str]:
    """Ten online scenes S00..S09 in `gf1`, each with a data file."""
    ids = [f"S{i:02d}" for i in range(10)]
    for n, item_id in enumerate(ids):
        data = assets / f"{item_id}.tif"
        data.write_bytes(f"cog bytes of {item_id}".encode())
        db.execute(
            "SELECT pgstac.upsert_item(%s)", (Jsonb(stac_item(item_id, data, 100 + n / 10)),)
        )
    return ids


@pytest.fixture
def keys(db: psycopg.Connection) -> dict[str, str]:
    """A key for each organisation."""
    issued = {}
    for who, (org, country, kind, scopes) in ORGS.items():
        add_org(db, org, country, kind, "test")
        issued[who] = issue_key(db, org, scopes, "test")[0]
    return issued


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 6, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
def make_client(
    pg_env: dict[str, str], assets: Path, clock: Clock
) -> Iterator[Callable[..., TestClient]]:
    """Start the orders app (settings overridable) on the test's clock."""
    opened: list[TestClient] = []

    def start(**overrides: Any) -> TestClient:
        options: dict[str, Any] = {"worker": False, "poll_interval_s": 0.1, **overrides}
        settings = Settings(asset_roots=[str(assets)], **options)
        client = TestClient(create_app(settings, clock))
        client.__enter__()
        opened.append(client)
        return client

    yield start
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@pytest.fixture
def catalog(pg_env: dict[str, str], assets: Path, clock: Clock) -> Iterator[TestClient]:
    """The catalog over the same database and assets, on the test's clock."""
    settings = CatalogSettings(access_ttl_s=0, asset_roots=[str(assets)])
    with TestClient(create_catalog(settings, clock)) as client:
        yield client
