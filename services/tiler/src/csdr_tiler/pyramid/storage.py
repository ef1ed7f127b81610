"""The SQL of the pyramids' tables (migrations 0011, 0013, 0014): generations, stored tiles of
collection and search layers, what is stale or unbuilt, and the refresher's advisory lock."""

from psycopg import sql

MAX_ZOOM_SQL = "SELECT csdr.pyramid_max_zoom()"
FOLD_SQL = "SELECT csdr.fold_tile_changes() WHERE EXISTS (SELECT 1 FROM csdr.tile_changes)"
GENERATIONS_SQL = """
    SELECT collection, generation, changed_at FROM csdr.tile_generations
    WHERE collection = ANY(%s) AND z = %s AND x = %s AND y = %s
"""
# A layer's tile generation: the sum over its collections (migration 0014).
LAYER_GENERATION_SQL = """
    SELECT coalesce(sum(generation), 0) FROM csdr.tile_generations
    WHERE collection = ANY(%s) AND z = %s AND x = %s AND y = %s
"""
EVERY_COLLECTION_GENERATION_SQL = """
    SELECT coalesce(sum(generation), 0) FROM csdr.tile_generations
    WHERE z = %s AND x = %s AND y = %s
"""
# Where each kind of layer keeps its tiles: table and key column.
TILE_TABLES = {False: ("pyramid_tiles", "collection"), True: ("search_pyramid_tiles", "search")}


def _tile_sql(search: bool, template: str) -> sql.Composed:
    table, key = TILE_TABLES[search]
    return sql.SQL(template).format(table=sql.Identifier("csdr", table), key=sql.Identifier(key))


# With how long ago the first change its pixels may not show happened (migration 0013).
STORED_SQL = {
    kind: _tile_sql(
        kind,
        """
        SELECT generation, dtype, bands, data, extract(epoch FROM clock_timestamp() - stale_since)
        FROM {table} WHERE {key} = %s AND asset = %s AND z = %s AND x = %s AND y = %s
        """,
    )
    for kind in TILE_TABLES
}
STORED_GENERATION_SQL = {
    kind: _tile_sql(
        kind,
        "SELECT generation FROM {table}"
        " WHERE {key} = %s AND asset = %s AND z = %s AND x = %s AND y = %s",
    )
    for kind in TILE_TABLES
}
STORE_SQL = {
    kind: _tile_sql(
        kind,
        """
        INSERT INTO {table} AS p ({key}, asset, z, x, y, generation, dtype, bands, data)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT ({key}, asset, z, x, y) DO UPDATE
            SET generation = excluded.generation, dtype = excluded.dtype, bands = excluded.bands,
                data = excluded.data, rendered_at = now(), stale_since = NULL
            WHERE p.generation < excluded.generation
        """,
    )
    for kind in TILE_TABLES
}
# The stored tiles under one tile (levels given by the ranges), except those behind a change
# older than the given seconds (which may no longer be shown): where and at which generation.
DESCENDANTS_SQL = {
    kind: _tile_sql(
        kind,
        """
        SELECT t.z, t.x, t.y, t.generation
        FROM {table} t
        JOIN (SELECT * FROM unnest(%s::int[], %s::int[], %s::int[], %s::int[], %s::int[]))
            AS r(z, x0, x1, y0, y1)
            ON t.z = r.z AND t.x BETWEEN r.x0 AND r.x1 AND t.y BETWEEN r.y0 AND r.y1
        WHERE t.{key} = %s AND t.asset = %s
          AND (t.stale_since IS NULL
               OR clock_timestamp() - t.stale_since < make_interval(secs => %s))
        """,
    )
    for kind in TILE_TABLES
}
# The values of some stored tiles (z, x, y as arrays).
VALUES_SQL = {
    kind: _tile_sql(
        kind,
        """
        SELECT t.z, t.x, t.y, t.dtype, t.bands, t.data
        FROM {table} t
        JOIN (SELECT * FROM unnest(%s::int[], %s::int[], %s::int[])) AS r(z, x, y)
            ON t.z = r.z AND t.x = r.x AND t.y = r.y
        WHERE t.{key} = %s AND t.asset = %s
        """,
    )
    for kind in TILE_TABLES
}
# Pyramids whose top tile is older than the collection's top generation, by asset stored.
STALE_SQL = """
    SELECT p.collection, p.asset FROM csdr.pyramid_tiles p
    JOIN csdr.tile_generations g USING (collection, z, x, y)
    WHERE p.z = 0 AND p.generation < g.generation
"""
# Collections with items and no pyramid yet.
UNBUILT_SQL = """
    SELECT g.collection FROM csdr.tile_generations g
    WHERE g.z = 0 AND NOT EXISTS (
        SELECT 1 FROM csdr.pyramid_tiles p WHERE p.collection = g.collection AND p.z = 0
    )
"""
# One refresher per pyramid across the node's tiler processes.
TRY_LOCK_SQL = "SELECT pg_try_advisory_lock(hashtext('csdr-pyramid'), hashtext(%s))"
UNLOCK_SQL = "SELECT pg_advisory_unlock(hashtext('csdr-pyramid'), hashtext(%s))"
