"""Push test fixtures: a database holding collection `gf1`, keys of each organisation, and a
webhook receiver."""

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from conftest import free_port
from csdr_access.admin import add_org, issue_key
from services.push.tests.receiver import Receiver
from services.push.tests.samples import COLLECTION, ORGS


@pytest.fixture
def db(pg_env: dict[str, str]) -> Iterator[psycopg.Connection]:
    """An autocommit connection to a fresh database holding the collection `gf1`."""
    with psycopg.connect(autocommit=True) as conn:
        conn.execute("SET search_path TO pgstac, public")  # delete_item needs it
        conn.execute("SELECT pgstac.create_collection(%s)", (Jsonb(COLLECTION),))
        yield conn


@pytest.fixture
def keys(db: psycopg.Connection) -> dict[str, str]:
    """A key for each of four organisations: two partners, the node's admin, an agency."""
    issued = {}
    for who, (org, country, kind, scopes) in ORGS.items():
        add_org(db, org, country, kind, "test")
        issued[who] = issue_key(db, org, scopes, "test")[0]
    return issued


@pytest.fixture
def upsert(db: psycopg.Connection) -> Callable[[dict[str, Any]], None]:
    """Write an item the way ingest does: pgstac.upsert_item in its own transaction."""

    def write(item: dict[str, Any]) -> None:
        with db.transaction():
            db.execute("SELECT pgstac.upsert_item(%s)", (Jsonb(item),))

    return write


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(free_port()).start()
    yield r
    r.stop()
