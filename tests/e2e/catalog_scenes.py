"""Synthetic Gaofen / ZY / CBERS scene catalogs for catalog tests and the catalog benchmark:
collections and items shaped like what ingest writes (the properties of migration 0003's
queryables), deterministic for a seed, loaded with pypgstac's Loader as an operator would."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from pypgstac.db import PgstacDB
from pypgstac.load import Loader, Methods

from tests.support.items import COG, cog, stac_item


@dataclass(frozen=True)
class Sensor:
    """One collection: a satellite's sensor at one processing level."""

    collection: str
    constellation: str
    platform: str
    instrument: str
    gsd: float
    swath_deg: float


SENSORS = [
    Sensor("gf1-wfv-l1a", "gaofen", "gf-1", "wfv", 16.0, 1.2),
    Sensor("gf2-pms-l1a", "gaofen", "gf-2", "pms", 3.2, 0.3),
    Sensor("zy3-mux-l1a", "ziyuan", "zy-3-01", "mux", 5.8, 0.5),
    Sensor("cbers4-mux-l2", "cbers", "cbers-4", "mux", 20.0, 1.0),
]
# Scenes over China: longitude 74..134 E, latitude 18..53 N.
WEST, SOUTH, EAST, NORTH = 74.0, 18.0, 134.0, 53.0
START = datetime(2020, 1, 1, tzinfo=UTC)
YEARS = 5


def collection(sensor: Sensor) -> dict:
    """A complete STAC collection for one sensor (license, providers, keywords, extents)."""
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": sensor.collection,
        "title": f"{sensor.platform.upper()} {sensor.instrument.upper()} scenes",
        "description": f"{sensor.constellation.title()} {sensor.platform.upper()} "
        f"{sensor.instrument.upper()} imagery at {sensor.gsd} m as Cloud-Optimized GeoTIFFs.",
        "keywords": [sensor.constellation, sensor.platform, sensor.instrument, "China"],
        "license": "other",
        "providers": [
            {"name": "CRESDA", "roles": ["producer", "licensor"], "url": "https://www.cresda.cn"},
            {"name": "CSDR Node", "roles": ["host", "processor"]},
        ],
        "extent": {
            "spatial": {"bbox": [[WEST, SOUTH, EAST, NORTH]]},
            "temporal": {"interval": [[START.isoformat(), None]]},
        },
        "summaries": {
            "constellation": [sensor.constellation],
            "platform": [sensor.platform],
            "instruments": [sensor.instrument],
            "gsd": [sensor.gsd],
        },
        "item_assets": {
            "data": {"type": COG, "roles": ["data"], "title": "Cloud-Optimized GeoTIFF"},
            "thumbnail": {"type": "image/png", "roles": ["thumbnail"], "title": "Thumbnail"},
        },
        "links": [],
    }


def items(count: int, seed: int = 4) -> Iterator[dict]:
    """`count` scenes spread over the sensors, China and five years, reproducibly for `seed`."""
    rng = random.Random(seed)
    span_s = int(timedelta(days=365 * YEARS).total_seconds())
    for n in range(count):
        sensor = SENSORS[n % len(SENSORS)]
        when = START + timedelta(seconds=rng.randrange(span_s))
        west = round(rng.uniform(WEST, EAST - sensor.swath_deg), 4)
        south = round(rng.uniform(SOUTH, NORTH - sensor.swath_deg), 4)
        bbox = (west, south, round(west + sensor.swath_deg, 4), round(south + sensor.swath_deg, 4))
        item_id = f"{sensor.platform.upper()}_{sensor.instrument.upper()}_{when:%Y%m%d}_{n:07d}"
        href = f"/srv/csdr/assets/{sensor.collection}/{item_id}"
        properties = {
            "datetime": when.isoformat().replace("+00:00", "Z"),
            "constellation": sensor.constellation,
            "platform": sensor.platform,
            "instruments": [sensor.instrument],
            "gsd": sensor.gsd,
            "eo:cloud_cover": round(rng.uniform(0, 100), 1),
            "view:off_nadir": round(rng.uniform(0, 30), 2),
            "view:sun_elevation": round(rng.uniform(10, 75), 2),
            "sat:absolute_orbit": 1000 + n // 40,
            "processing:level": "L2" if sensor.collection.endswith("l2") else "L1A",
        }
        assets = {
            "data": cog(f"{href}.tif"),
            "thumbnail": {"href": f"{href}.png", "type": "image/png", "roles": ["thumbnail"]},
        }
        yield stac_item(item_id, sensor.collection, bbox, properties, assets)


def conninfo(env: dict[str, str]) -> str:
    """A libpq connection string for a PG* environment block."""
    return (
        f"host={env['PGHOST']} port={env['PGPORT']} user={env['PGUSER']} "
        f"password={env['PGPASSWORD']} dbname={env['PGDATABASE']}"
    )


def load(
    env: dict[str, str], count: int, seed: int = 4, partition_trunc: str | None = None
) -> None:
    """Load the sensors' collections and `count` items into the database `env` names."""
    options = "options='-c search_path=pgstac,public'"
    with psycopg.connect(f"{conninfo(env)} {options}", autocommit=True) as conn:
        db = PgstacDB(connection=conn)
        loader = Loader(db)
        cols = [collection(s) for s in SENSORS]
        loader.load_collections(iter(cols), insert_mode=Methods.upsert)
        if partition_trunc:
            conn.execute(
                "UPDATE pgstac.collections SET partition_trunc = %s WHERE id = ANY(%s)",
                (partition_trunc, [c["id"] for c in cols]),
            )
        loader.load_items(items(count, seed), insert_mode=Methods.insert, chunksize=20000)
