from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from conftest import free_port
from csdr_access.admin import add_org, issue_key
from services.push.tests.receiver import Receiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks spec's example


def stac_item(item_id: str, lon: float = 118.9, lat: float = 37.8, **props: Any) -> dict[str, Any]:
    """A small STAC item: a 0.1 degree square at lon, lat with the given properties."""
    ring = [[lon, lat], [lon + 0.1, lat], [lon + 0.1, lat + 0.1], [lon, lat + 0.1], [lon, lat]]
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": item_id,
        "collection": "gf1",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": [lon, lat, lon + 0.1, lat + 0.1],
        "properties": {"datetime": "2024-05-12T02:46:00Z", "platform": "GF-1", **props},
        "links": [],
        "assets": {
            "data": {
                "href": f"/data/{item_id}.tif",
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "roles": ["data"],
            }
        },
    }


COLLECTION = {
    "type": "Collection",
    "stac_version": "1.1.0",
    "id": "gf1",
    "description": "GF-1 scenes",
    "license": "other",
    "links": [],
    "extent": {
        "spatial": {"bbox": [[-180, -90, 180, 90]]},
        "temporal": {"interval": [[None, None]]},
    },
}


@pytest.fixture
def db(pg_env: dict[str, str]) -> Iterator[psycopg.Connection]:
    """An autocommit connection to a fresh database holding the collection `gf1`."""
    with psycopg.connect(autocommit=True) as conn:
        conn.execute("SET search_path TO pgstac, public")  # delete_item needs it
        conn.execute("SELECT pgstac.create_collection(%s)", (Jsonb(COLLECTION),))
        yield conn


ORGS = {  # who -> (organisation, country, kind, scopes)
    "partner A": ("GISTDA", "TH", "partner", ["read"]),
    "partner B": ("KenSpace", "KE", "partner", ["read"]),
    "admin": ("CRESDA", "CN", "main", ["admin"]),
    "registered": ("UNOOSA", "AT", "agency", ["read"]),
}


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
