"""Catalog test fixtures: one loaded database and one app per test module, for read-only tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from conftest import TEMPLATE_DB
from csdr_catalog.app import create_app
from csdr_catalog.settings import Settings
from infra.local.pgcluster import Cluster
from tests.support.gf2_catalog import load_catalog


@pytest.fixture(scope="module")
def loaded_db(pg_cluster: Cluster) -> Iterator[dict[str, str]]:
    """The validator's GF-2 collection and scenes in a fresh database, shared by a module."""
    name = f"cat_{uuid.uuid4().hex[:10]}"
    pg_cluster.create_database(name, template=TEMPLATE_DB)
    env = pg_cluster.env(name)
    load_catalog(env)
    yield env
    with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def loaded_client(loaded_db: dict[str, str]) -> Iterator[TestClient]:
    """The catalog app over `loaded_db`; server errors come back as responses, not raised."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in loaded_db.items():
            mp.setenv(key, value)
        with TestClient(create_app(Settings()), raise_server_exceptions=False) as client:
            yield client
