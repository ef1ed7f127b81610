"""Tiler test fixtures: a database with a 4-band and a pan scene ingested, once per module."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from conftest import TEMPLATE_DB
from services.tiler.tests.scenes import Ingested, ingest, ingest_pan


@pytest.fixture(scope="module")
def db(pg_cluster, tmp_path_factory) -> Iterator[dict[str, Ingested]]:
    """One database for the module: a 4-band scene and a pan scene, ingested once."""
    name = f"tiler_{uuid.uuid4().hex[:8]}"
    pg_cluster.create_database(name, template=TEMPLATE_DB)
    env = pg_cluster.env(name)
    directory = tmp_path_factory.mktemp("presets")
    suffix = uuid.uuid4().hex[:6]
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        with psycopg.connect(autocommit=True) as conn:
            scenes = {
                "ms": ingest(conn, directory / "ms", f"gf2-{suffix}"),
                "pan": ingest_pan(conn, directory / "pan", f"pan-{suffix}"),
            }
        yield scenes
    with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
