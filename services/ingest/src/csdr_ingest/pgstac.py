"""Writes to pgSTAC: the item, the collection it belongs to, and that collection's extent, in the
caller's transaction, so a failure leaves the catalog as it was."""

from typing import Any

import psycopg
from psycopg.types.json import Jsonb


def new_collection(collection_id: str, license_: str) -> dict[str, Any]:
    """A collection created on first ingest; its extent is recomputed with every item."""
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": collection_id,
        "title": collection_id,
        "description": f"Scenes ingested into the {collection_id} collection of this CSDR node.",
        "license": license_,
        "links": [],
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [[None, None]]},
        },
        "item_assets": {
            "data": {
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "roles": ["data"],
                "title": "Cloud-Optimized GeoTIFF",
            },
            "thumbnail": {"type": "image/png", "roles": ["thumbnail"], "title": "Thumbnail"},
        },
    }


def lock_collection(conn: psycopg.Connection, collection: str) -> None:
    """Hold, until the transaction ends, the right to publish into `collection`; take it before
    touching pgSTAC's tables. Two processes creating the same collection (or the same new
    partition) at once deadlocked inside pgSTAC (tests/bench/bench_cresda.py); a publish takes
    milliseconds, and the raster work before it still runs in parallel."""
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('csdr.publish'), hashtext(%s))", (collection,)
    )


def item_exists(conn: psycopg.Connection, collection: str, item_id: str) -> bool:
    """True when pgSTAC holds this item."""
    row = conn.execute(
        "SELECT 1 FROM pgstac.items WHERE collection = %s AND id = %s", (collection, item_id)
    ).fetchone()
    return row is not None


def asset_hrefs(conn: psycopg.Connection, collection: str, item_id: str) -> set[str]:
    """The asset hrefs of the stored item (none when it does not exist)."""
    # Hydrated: pgSTAC stores items stripped of what the collection's item_assets say, with a
    # marker string for an asset the item lacks.
    row = conn.execute("SELECT pgstac.get_item(%s, %s)->'assets'", (item_id, collection)).fetchone()
    assets = (row[0] if row else None) or {}
    return {a["href"] for a in assets.values() if isinstance(a, dict) and "href" in a}


def publish_item(
    conn: psycopg.Connection,
    item: dict[str, Any],
    license_: str,
    template: dict[str, Any] | None = None,
) -> None:
    """Create the collection if missing (from `template` when given), upsert the item, refresh
    the collection's extent."""
    collection = item["collection"]
    conn.execute("SET LOCAL search_path TO pgstac, public")  # pgSTAC's functions need it
    lock_collection(conn, collection)
    exists = conn.execute(
        "SELECT 1 FROM pgstac.collections WHERE id = %s", (collection,)
    ).fetchone()
    if not exists:
        conn.execute(
            "SELECT pgstac.create_collection(%s)",
            (Jsonb(template or new_collection(collection, license_)),),
        )
    conn.execute("SELECT pgstac.upsert_item(%s)", (Jsonb(item),))
    conn.execute(
        "UPDATE pgstac.collections SET content = content || jsonb_build_object('extent', e)"
        " FROM (SELECT pgstac.collection_extent(%s, true) AS e) x WHERE id = %s AND e IS NOT NULL",
        (collection, collection),
    )
