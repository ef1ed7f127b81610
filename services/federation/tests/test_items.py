"""Items merged and split in Python (csdr_federation.items) against pgSTAC's own SQL: a row written
by `items.upsert` reads back exactly as the same item written by pgstac.upsert_items (columns and
content_hydrate), `hydrate_rows` reads a row as content_hydrate does, and a repeated write changes
nothing (no event in the outbox) while a changed item is one `updated` event."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from csdr_federation import items
from csdr_service import pools
from services.federation.tests.conftest import stac_collection, stac_item

ITEM_ASSETS = {
    "data": {"type": "image/tiff", "roles": ["data"], "title": "Cloud-Optimized GeoTIFF"},
    "thumbnail": {"type": "image/png", "roles": ["thumbnail"], "title": "Thumbnail"},
}


def samples(data_title: str = ITEM_ASSETS["data"]["title"]) -> list[dict[str, Any]]:
    """Items of a collection with item_assets (`gf7`) and one without (`gf1`): assets as the
    collection lists them, with fewer or other fields, an extra asset, a date range, a second
    year (a partition of its own)."""
    plain = stac_item("P1", "gf1")
    ranged = stac_item("P2", "gf1", lon=100.0, lat=20.0, **{"eo:cloud_cover": 3.5})
    del ranged["properties"]["datetime"]
    ranged["properties"] |= {
        "start_datetime": "2023-12-31T23:00:00Z",
        "end_datetime": "2024-01-01T01:00:00+00:00",
    }
    ranged["properties"]["datetime"] = None
    listed = stac_item("L1", "gf7", lon=101.0, lat=18.0)
    listed["assets"] = {
        "data": {**ITEM_ASSETS["data"], "title": data_title, "href": "https://example.org/L1.tif"},
        "thumbnail": {"href": "https://example.org/L1.png", "roles": ["overview"]},
    }
    fewer = stac_item("L2", "gf7", lon=102.0, lat=19.0, datetime="2021-03-04T05:06:07Z")
    fewer["assets"] = {
        "data": {"href": "https://example.org/L2.tif", "type": "image/tiff"},
        "extra": {"href": "https://example.org/L2.xml", "roles": ["metadata"]},
    }
    fewer["stac_extensions"] = ["https://stac-extensions.github.io/eo/v1.1.0/schema.json"]
    return [plain, ranged, listed, fewer]


def rows(db: psycopg.Connection) -> dict[tuple[str, str], tuple[Any, ...]]:
    """Each stored item: its row's columns and content_hydrate of it."""
    found = db.execute(
        "SELECT collection, id, st_asewkb(geometry), datetime, end_datetime, private,"
        " pgstac.content_hydrate(i) FROM pgstac.items i"
    ).fetchall()
    return {(r[0], r[1]): r[2:] for r in found}


async def write(samples: list[dict[str, Any]]) -> None:
    pool = await pools.open_pool(2, "test", pgstac=True)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await items.upsert(conn, copy.deepcopy(samples))
    finally:
        await pool.close()


async def read() -> dict[tuple[str, str], dict[str, Any]]:
    pool = await pools.open_pool(2, "test", pgstac=True)
    try:
        async with pool.acquire() as conn:
            found = await conn.fetch(
                f"SELECT i.collection, i.id, {items.ROW_SQL} FROM pgstac.items i"
                " ORDER BY i.collection, i.id"
            )
            merged = await items.hydrate_rows(conn, [(r[0], r["tag"], r["row"]) for r in found])
        return {(r[0], r[1]): item for r, item in zip(found, merged, strict=True)}
    finally:
        await pool.close()


def json_without_nulls(value: Any) -> Any:
    """A document without its null object fields (jsonb_strip_nulls)."""
    if isinstance(value, dict):
        return {k: json_without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [json_without_nulls(v) for v in value]
    return value


def events(db: psycopg.Connection) -> list[tuple[str, str]]:
    return db.execute("SELECT type, item_id FROM csdr.item_events ORDER BY id").fetchall()


def test_rows_written_here_equal_pgstacs_and_read_back_alike(db: psycopg.Connection) -> None:
    collection = stac_collection("gf7", item_assets=copy.deepcopy(ITEM_ASSETS))
    db.execute("SELECT pgstac.create_collection(%s)", (Jsonb(collection),))
    # The collection's base item edited once: new rows are tagged with it.
    collection["item_assets"]["data"]["title"] = "COG"
    db.execute("SELECT pgstac.update_collection(%s)", (Jsonb(collection),))
    given = samples(data_title="COG")
    with db.transaction():
        db.execute("SELECT pgstac.upsert_items(%s)", (Jsonb(given),))
    by_pgstac = rows(db)
    db.execute("DELETE FROM pgstac.items")
    asyncio.run(write(given))
    here = rows(db)
    assert set(here) == {(i["collection"], i["id"]) for i in given}
    for key in here:
        assert here[key] == by_pgstac[key], key
    # Read back in Python, each item is exactly what was written; content_hydrate makes the same
    # but for null fields, which pgSTAC's SQL drops (`datetime` of a ranged item, which STAC
    # requires) and pypgstac's loader and the STAC API (hydraters) keep.
    read_back = asyncio.run(read())
    assert read_back == {(i["collection"], i["id"]): i for i in given}
    for key, item in read_back.items():
        assert here[key][-1] == json_without_nulls(item), key
    assert (
        "pgstac:base_item"
        in db.execute(
            "SELECT content FROM pgstac.items WHERE collection = 'gf7' LIMIT 1"
        ).fetchone()[0]
    )


def test_a_repeated_write_changes_nothing_and_a_change_is_one_update(
    db: psycopg.Connection,
) -> None:
    db.execute(
        "SELECT pgstac.create_collection(%s)",
        (Jsonb(stac_collection("gf7", item_assets=ITEM_ASSETS)),),
    )
    given = samples()
    asyncio.run(write(given))
    assert sorted(events(db)) == sorted(("created", i["id"]) for i in given)
    before = rows(db)
    asyncio.run(write(given))
    assert len(events(db)) == len(given)
    assert rows(db) == before
    given[2]["properties"]["eo:cloud_cover"] = 42.0
    given[3]["properties"]["datetime"] = "2022-06-01T00:00:00Z"  # into another partition
    asyncio.run(write(given))
    assert sorted(events(db)[len(given) :]) == [("updated", "L1"), ("updated", "L2")]
    after = rows(db)
    assert after[("gf7", "L1")][-1]["properties"]["eo:cloud_cover"] == 42.0
    assert after[("gf7", "L2")][1].year == 2022
    assert {k: v for k, v in after.items() if k[1] not in ("L1", "L2")} == {
        k: v for k, v in before.items() if k[1] not in ("L1", "L2")
    }
