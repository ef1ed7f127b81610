from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from csdr_access.admin import add_org, issue_key
from tests.support import items
from tests.support.items import cog, square


def stac_item(
    item_id: str, collection: str = "gf1", lon: float = 118.9, lat: float = 37.8, **props: Any
) -> dict[str, Any]:
    """A small STAC item: a 0.1 degree square at lon, lat with the given properties."""
    properties = {"datetime": "2024-05-12T02:46:00Z", "platform": "GF-1", **props}
    assets = {"data": cog(f"https://example.org/{item_id}.tif")}
    return items.stac_item(item_id, collection, square(lon, lat, 0.1), properties, assets)


def stac_collection(collection_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": collection_id,
        "description": f"{collection_id} scenes",
        "license": "other",
        "links": [],
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [[None, None]]},
        },
        **extra,
    }


@pytest.fixture
def db(pg_env: dict[str, str]) -> Iterator[psycopg.Connection]:
    """An autocommit connection to a fresh database holding collections `gf1` and `gf2`."""
    with psycopg.connect(autocommit=True) as conn:
        conn.execute("SET search_path TO pgstac, public")
        for cid in ("gf1", "gf2"):
            conn.execute("SELECT pgstac.create_collection(%s)", (Jsonb(stac_collection(cid)),))
        yield conn


@pytest.fixture
def keys(db: psycopg.Connection) -> dict[str, str]:
    """Keys of a partner organisation (read) and of the node's administrator."""
    add_org(db, "LASAC", "LA", "partner", "test")
    add_org(db, "CRESDA", "CN", "main", "test")
    return {
        "partner": issue_key(db, "LASAC", ["read"], "test")[0],
        "admin": issue_key(db, "CRESDA", ["admin"], "test")[0],
    }


@pytest.fixture
def upsert(db: psycopg.Connection) -> Callable[..., None]:
    """Write items the way ingest does: pgstac.upsert_item, one transaction each."""

    def write(*items: dict[str, Any]) -> None:
        for item in items:
            with db.transaction():
                db.execute("SELECT pgstac.upsert_item(%s)", (Jsonb(item),))

    return write
