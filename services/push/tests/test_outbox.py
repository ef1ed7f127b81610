"""csdr.item_events: written by the database in the item's own transaction, for every pgSTAC
write path and every partition; matched against subscriptions by csdr.fan_out."""

import psycopg
import pytest
from psycopg.types.json import Jsonb

from services.push.tests.samples import stac_item


def events(db: psycopg.Connection) -> list[tuple[str, str]]:
    return [
        (r[0], r[1])
        for r in db.execute("SELECT type, item_id FROM csdr.item_events ORDER BY id").fetchall()
    ]


def test_upsert_creates_then_updates_and_ignores_identical_rewrites(db, upsert):
    upsert(stac_item("a", **{"eo:cloud_cover": 5}))
    upsert(stac_item("a", **{"eo:cloud_cover": 5}))
    upsert(stac_item("a", **{"eo:cloud_cover": 7}))
    assert events(db) == [("created", "a"), ("updated", "a")]


def test_rolled_back_write_produces_no_event(db):
    with pytest.raises(RuntimeError), db.transaction():
        db.execute("SELECT pgstac.upsert_item(%s)", (Jsonb(stac_item("gone")),))
        assert events(db) == [("created", "gone")]  # visible inside its transaction only
        raise RuntimeError("abort")
    assert events(db) == []
    assert db.execute("SELECT count(*) FROM pgstac.items").fetchone() == (0,)


def test_every_pgstac_write_path_produces_events(db):
    db.execute("SELECT pgstac.create_item(%s)", (Jsonb(stac_item("one")),))
    db.execute("SELECT pgstac.create_items(%s)", (Jsonb([stac_item("two"), stac_item("three")]),))
    db.execute("SELECT pgstac.upsert_items(%s)", (Jsonb([stac_item("two", gsd=2)]),))
    db.execute("SELECT pgstac.update_item(%s)", (Jsonb(stac_item("one", gsd=8)),))
    db.execute("SELECT pgstac.delete_item('three', 'gf1')")
    assert events(db) == [
        ("created", "one"),
        ("created", "two"),
        ("created", "three"),
        ("updated", "two"),
        ("updated", "one"),
        ("deleted", "three"),
    ]


def test_partitions_created_later_and_repartitioning(db, upsert):
    # A second collection partitioned by year: its partitions do not exist before the first item.
    other = {**stac_item("x"), "collection": "zy3"}
    db.execute(
        "SELECT pgstac.create_collection(%s)",
        (Jsonb({**db.execute("SELECT pgstac.get_collection('gf1')").fetchone()[0], "id": "zy3"}),),
    )
    db.execute("UPDATE pgstac.collections SET partition_trunc = 'year' WHERE id = 'zy3'")
    upsert(other)
    upsert(
        {
            **other,
            "id": "y",
            "properties": {**other["properties"], "datetime": "2019-01-01T00:00:00Z"},
        }
    )
    assert events(db) == [("created", "x"), ("created", "y")]
    leaf_partitions = db.execute(
        "SELECT c.relname, EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid"
        "  AND t.tgname = 'csdr_item_events')"
        " FROM pg_partition_tree('pgstac.items') p JOIN pg_class c ON c.oid = p.relid"
        " WHERE p.isleaf"
    ).fetchall()
    assert len(leaf_partitions) == 2 and all(has for _, has in leaf_partitions), leaf_partitions
    # pgSTAC's repartition drops the partitions and inserts the same rows again: no new events.
    db.execute("UPDATE pgstac.collections SET partition_trunc = 'month' WHERE id = 'zy3'")
    assert db.execute("SELECT count(*) FROM pgstac.items WHERE collection = 'zy3'").fetchone() == (
        2,
    )
    assert events(db) == [("created", "x"), ("created", "y")]


def subscribe(db, bbox=None, where_filter=None, collections=None) -> str:
    where = (
        db.execute(
            "SELECT pgstac.stac_search_to_where(%s)", (Jsonb({"filter": where_filter}),)
        ).fetchone()[0]
        if where_filter
        else None
    )
    return str(
        db.execute(
            "INSERT INTO csdr.subscriptions (collections, geometry, filter_where, webhook_url,"
            " webhook_secret) VALUES (%s, CASE WHEN %s::jsonb IS NULL THEN NULL"
            " ELSE pgstac.stac_geom(%s) END, %s, 'http://example.org/hook', 'whsec_x')"
            " RETURNING id",
            (collections, Jsonb(bbox) if bbox else None, Jsonb({"bbox": bbox}), where),
        ).fetchone()[0]
    )


def test_fan_out_matches_area_filter_and_collections(db, upsert):
    low_cloud = {"op": "<=", "args": [{"property": "eo:cloud_cover"}, 20]}
    delta = subscribe(db, bbox=[118.5, 37.5, 119.5, 38.5], where_filter=low_cloud)
    anywhere = subscribe(db)
    other_collection = subscribe(db, collections=["zy3"])
    upsert(stac_item("inside-clear", **{"eo:cloud_cover": 5}))
    upsert(stac_item("inside-cloudy", **{"eo:cloud_cover": 80}))
    upsert(stac_item("outside-clear", lon=10, lat=10, **{"eo:cloud_cover": 5}))
    assert db.execute("SELECT * FROM csdr.fan_out(100)").fetchone() == (3, 4)
    matched = db.execute(
        "SELECT d.subscription_id::text, e.item_id FROM csdr.deliveries d"
        " JOIN csdr.item_events e ON e.id = d.event_id ORDER BY e.id"
    ).fetchall()
    assert sorted(matched) == sorted(
        [
            (delta, "inside-clear"),
            (anywhere, "inside-clear"),
            (anywhere, "inside-cloudy"),
            (anywhere, "outside-clear"),
        ]
    )
    assert other_collection not in {s for s, _ in matched}
    # Fanned-out events carry the hydrated item; a second fan-out finds nothing to do.
    item = db.execute(
        "SELECT item FROM csdr.item_events WHERE item_id = 'inside-clear'"
    ).fetchone()[0]
    assert item["properties"]["eo:cloud_cover"] == 5 and item["collection"] == "gf1"
    assert db.execute("SELECT * FROM csdr.fan_out(100)").fetchone() == (0, 0)
