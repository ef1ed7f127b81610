"""Migration 0025 rewinds footprints stored clockwise (as ingests before the right-hand rule wrote
PMS scenes) so pgSTAC serves them counter-clockwise, and leaves the others alone."""

import psycopg
from psycopg.types.json import Jsonb

from infra.db.migrate import MIGRATIONS_DIR, migrate

MIGRATION = "0025_footprint_winding.sql"
CLOCKWISE = [[47.2, -14.3], [47.2, -13.1], [48.5, -13.1], [48.5, -14.3], [47.2, -14.3]]


COLLECTION = {
    "type": "Collection",
    "stac_version": "1.1.0",
    "id": "winding",
    "description": "footprints wound either way",
    "license": "other",
    "extent": {
        "spatial": {"bbox": [[-180, -90, 180, 90]]},
        "temporal": {"interval": [[None, None]]},
    },
    "links": [],
}


def item(item_id: str, when: str, ring: list[list[float]]) -> dict:
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": item_id,
        "collection": "winding",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": [47.2, -14.3, 48.5, -13.1],
        "properties": {"datetime": when},
        "assets": {"data": {"href": f"/srv/{item_id}.tif", "roles": ["data"]}},
        "links": [],
    }


def signed_area(ring: list[list[float]]) -> float:
    pairs = zip(ring, ring[1:], strict=False)
    return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in pairs)


def test_clockwise_footprints_are_rewound_once(pg_env):
    assert (MIGRATIONS_DIR / MIGRATION).is_file()
    wrong = item("clockwise", "2022-06-24T05:00:00Z", CLOCKWISE)
    right = item("counter-clockwise", "2022-06-25T05:00:00Z", CLOCKWISE[::-1])
    with psycopg.connect(autocommit=True) as conn:
        conn.execute("SELECT pgstac.create_collection(%s)", (Jsonb(COLLECTION),))
        conn.execute("SELECT pgstac.create_items(%s)", (Jsonb([wrong, right]),))
        stored = conn.execute("SELECT pgstac.get_item('clockwise', 'winding')").fetchone()[0]
        assert signed_area(stored["geometry"]["coordinates"][0]) < 0  # pgSTAC keeps the winding
        kept = conn.execute("SELECT pgstac.get_item('counter-clockwise', 'winding')").fetchone()[0]
        events_before = conn.execute("SELECT count(*) FROM csdr.item_events").fetchone()[0]
        conn.execute("DELETE FROM csdr.schema_migrations WHERE name = %s", (MIGRATION,))
    migrate()
    with psycopg.connect(autocommit=True) as conn:
        rewound = conn.execute("SELECT pgstac.get_item('clockwise', 'winding')").fetchone()[0]
        ring = rewound["geometry"]["coordinates"][0]
        assert signed_area(ring) > 0
        assert sorted(map(tuple, ring)) == sorted(map(tuple, CLOCKWISE))
        assert (
            conn.execute("SELECT pgstac.get_item('counter-clockwise', 'winding')").fetchone()[0]
            == kept
        )
        events = conn.execute(
            "SELECT type, item_id FROM csdr.item_events ORDER BY id OFFSET %s", (events_before,)
        ).fetchall()
        assert events == [("updated", "clockwise")]
        with conn.transaction():
            conn.execute((MIGRATIONS_DIR / MIGRATION).read_text())
        again = conn.execute("SELECT count(*) FROM csdr.item_events").fetchone()[0]
        assert again == events_before + 1
