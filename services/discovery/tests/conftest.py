"""Discovery test fixtures: a database of collections (a few hidden), the discovery app served
over a real socket for OWSLib and Sickle, and the catalog app to compare with."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from conftest import TEMPLATE_DB, free_port
from csdr_catalog.app import create_app as create_catalog
from csdr_catalog.settings import Settings as CatalogSettings
from csdr_discovery.app import create_app
from csdr_discovery.settings import Settings
from infra.local.pgcluster import Cluster
from tests.support.servers import served

PLATFORMS = [("GF-1", "PMS"), ("GF-2", "PMS"), ("ZY-3", "MUX"), ("CBERS-4", "WFI")]
THEMES = ["optical", "forest", "urban", "coast", "flood"]
HIDDEN = ["secret-partners", "secret-private"]


def collection(i: int, **extra: Any) -> dict[str, Any]:
    """The i-th test collection: a 10-degree box on a grid, a year's interval, a theme."""
    platform, instrument = PLATFORMS[i % len(PLATFORMS)]
    west, south = -170 + (i % 9) * 35, -60 + (i // 9) * 40
    year = 2015 + i % 9
    end = None if i % 7 == 0 else f"{year}-12-31T23:59:59Z"
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": f"c{i:02d}-{platform.lower()}",
        "title": f"{platform} {instrument} scenes, set {i}",
        "description": f"{platform} {instrument} {THEMES[i % len(THEMES)]} imagery, set {i}",
        "keywords": [THEMES[i % len(THEMES)], "EARTH SCIENCE > LAND SURFACE"],
        "license": "CC-BY-4.0" if i % 2 else "proprietary",
        "summaries": {"platform": [platform], "instruments": [instrument]},
        "extent": {
            "spatial": {"bbox": [[west, south, west + 10, south + 10]]},
            "temporal": {"interval": [[f"{year}-01-01T00:00:00Z", end]]},
        },
        "links": [],
        **extra,
    }


COLLECTIONS = [collection(i) for i in range(23)]


def load(env: dict[str, str]) -> None:
    """The test collections, two of them hidden from anonymous callers."""
    with psycopg.connect(conninfo(env), autocommit=True) as conn:
        for c in COLLECTIONS:
            conn.execute("SELECT pgstac.create_collection(%s)", (Jsonb(c),))
        for i, cid in enumerate(HIDDEN):  # the policy first: never public, not for a moment
            conn.execute(
                "INSERT INTO csdr.collection_policies (collection, policy) VALUES (%s, %s)",
                (cid, "partners" if i == 0 else "private"),
            )
            conn.execute("SELECT pgstac.create_collection(%s)", (Jsonb(collection(i, id=cid)),))


def conninfo(env: dict[str, str]) -> str:
    """A libpq connection string for a database's PG* variables."""
    return (
        f"host={env['PGHOST']} port={env['PGPORT']} user={env['PGUSER']} "
        f"password={env['PGPASSWORD']} dbname={env['PGDATABASE']}"
    )


@pytest.fixture(scope="module")
def discovery_db(pg_cluster: Cluster) -> Iterator[dict[str, str]]:
    """A fresh database holding the test collections, shared by a module."""
    name = f"disc_{uuid.uuid4().hex[:10]}"
    pg_cluster.create_database(name, template=TEMPLATE_DB)
    env = pg_cluster.env(name)
    load(env)
    yield env
    with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def serve(make_app: Callable[[str], Any]) -> Iterator[str]:
    """Serve `make_app(base URL)` on a free port until the generator closes; yield the URL."""
    port = free_port()
    with served(make_app(f"http://127.0.0.1:{port}"), "/readyz", port) as url:
        yield url


def settings(public_url: str, catalog_api_url: str = "") -> Settings:
    """Discovery as a node at node.example would configure it."""
    return Settings(
        public_url=public_url,
        catalog_api_url=catalog_api_url,
        catalog_url="https://node.example/stac",
        tiler_url="https://node.example/tiles",
        organisation="LASAC",
        contact_email="geoss@node.example",
        oai_page_size=5,
        access_ttl_s=0.0,
    )


@pytest.fixture(scope="module")
def catalog_url(discovery_db: dict[str, str]) -> Iterator[str]:
    """The node's STAC API over `discovery_db`, on a real socket (OpenSearch granules)."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in discovery_db.items():
            mp.setenv(key, value)
        yield from serve(lambda url: create_catalog(CatalogSettings()))


@pytest.fixture(scope="module")
def discovery_url(discovery_db: dict[str, str], catalog_url: str) -> Iterator[str]:
    """The discovery service over `discovery_db`, on a real socket."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in discovery_db.items():
            mp.setenv(key, value)
        yield from serve(lambda url: create_app(settings(url, catalog_url)))


@pytest.fixture(scope="module")
def catalog(discovery_db: dict[str, str]) -> Iterator[TestClient]:
    """The node's STAC API over the same database, to compare answers with."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in discovery_db.items():
            mp.setenv(key, value)
        with TestClient(create_catalog(CatalogSettings()), raise_server_exceptions=False) as c:
            yield c
