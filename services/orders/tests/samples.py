"""The orders tests' sample data: organisations, collection `gf1`, small online scenes, a clock
the test sets, and request helpers."""

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from tests.support import items
from tests.support.items import cog, square

ORGS = {  # who -> (organisation, country, kind, scopes)
    "thailand": ("GISTDA", "TH", "partner", ["read"]),
    "bangladesh": ("SPARRSO", "BD", "partner", ["read"]),
    "admin": ("CRESDA", "CN", "main", ["admin"]),
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


def stac_item(item_id: str, data: Path, lon: float = 100.5, **props: Any) -> dict[str, Any]:
    """A small online scene whose data asset is the file `data`."""
    properties = {
        "datetime": "2026-05-12T02:46:00Z",
        "platform": "gf-1",
        "instruments": ["wfv"],
        "order:status": "succeeded",
        **props,
    }
    assets = {
        "data": cog(str(data)),
        "thumbnail": {"href": str(data.with_suffix(".png")), "roles": ["thumbnail"]},
    }
    return items.stac_item(item_id, "gf1", square(lon, 13.7, 0.1), properties, assets)


@dataclass
class Clock:
    """A clock the test sets."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def order_of(*ids: str) -> dict[str, Any]:
    return {"items": [{"collection": "gf1", "id": i} for i in ids]}


def set_quota(db: psycopg.Connection, org: str, scenes: int, quota_class: str = "all") -> None:
    db.execute(
        "INSERT INTO csdr.quota_limits (org_id, class, scenes)"
        " SELECT id, %s, %s FROM csdr.organisations WHERE name = %s"
        " ON CONFLICT (org_id, class) DO UPDATE SET scenes = excluded.scenes",
        (quota_class, scenes, org),
    )


def offline_item(item_id: str, lon: float = 101.5) -> dict[str, Any]:
    """An archived scene: footprint and metadata, no data asset, `order:status` orderable."""
    properties = {
        "datetime": "2026-03-02T03:00:00Z",
        "platform": "gf-1",
        "instruments": ["pms"],
        "order:status": "orderable",
    }
    assets = {"metadata": {"href": f"/archive/{item_id}.xml", "roles": ["metadata"]}}
    return items.stac_item(item_id, "gf1", square(lon, 13.7, 0.1), properties, assets)


def add_offline(db: psycopg.Connection, item_id: str, source: str) -> None:
    """Register an archived scene the way ingest does (item + package location)."""
    db.execute("SELECT pgstac.upsert_item(%s)", (Jsonb(offline_item(item_id)),))
    db.execute(
        "INSERT INTO csdr.offline_packages (collection, item_id, source) VALUES ('gf1', %s, %s)",
        (item_id, source),
    )
