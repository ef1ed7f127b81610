-- The tiler's low-zoom pyramid (0011), continued: how long a stored tile has been behind, and
-- the item removals that no row trigger sees.
--
-- 1. csdr.pyramid_tiles.stale_since: the time of the first change under a stored tile that its
--    pixels may not show (set when the change is folded; cleared when the tile is stored again).
--    The tiler may answer a request with such a tile while its refresher renders the new one,
--    but only for as long as that change is younger than the refresher interval, so that a
--    deleted or hidden scene stays on the map no longer than that. NULL on a behind tile means
--    unknown: the tiler renders it before answering.
-- 2. TRUNCATE of pgstac.items, and a collection's deletion (pgSTAC then drops its partition with
--    DROP TABLE: no DELETE trigger fires), bump the generation of every tile of the collections
--    concerned and drop their stored pyramid tiles: the next request renders from what is left,
--    and no ETag of before matches (generations only grow, so an old ETag never comes back).
--    (TRUNCATE of a single partition is not seen: pgSTAC never does it, and statement triggers
--    are not cloned onto partitions.)

ALTER TABLE csdr.pyramid_tiles ADD COLUMN stale_since timestamptz;

-- 0011's fold, also marking the stored tiles its changes make stale; without JIT: the planner
-- takes each generate_series of tiles_of_box for 1000 rows, estimates 10^8 tiles for a handful
-- and spent ~0.85 s compiling the statement, on the first request after every change.
CREATE OR REPLACE FUNCTION csdr.fold_tile_changes() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public SET jit = off AS $$
DECLARE
    folded integer;
BEGIN
    WITH moved AS (
        DELETE FROM csdr.tile_changes RETURNING collection, box, changed_at
    ), tiles AS (
        SELECT m.collection, t.z, t.x, t.y, count(*) AS n, min(m.changed_at) AS first_at,
               max(m.changed_at) AS changed_at
        FROM moved m, csdr.tiles_of_box(m.box, csdr.pyramid_max_zoom()) t
        GROUP BY 1, 2, 3, 4
    ), behind AS (
        UPDATE csdr.pyramid_tiles p SET stale_since = t.first_at
        FROM tiles t
        WHERE p.collection = t.collection AND p.z = t.z AND p.x = t.x AND p.y = t.y
          AND p.stale_since IS NULL
    )
    INSERT INTO csdr.tile_generations AS g (collection, z, x, y, generation, changed_at)
    SELECT collection, z, x, y, n, changed_at FROM tiles ORDER BY 1, 2, 3, 4
    ON CONFLICT (collection, z, x, y) DO UPDATE
        SET generation = g.generation + excluded.generation,
            changed_at = greatest(g.changed_at, excluded.changed_at);
    GET DIAGNOSTICS folded = ROW_COUNT;
    RETURN folded;
END
$$;

-- Every tile of `collections` (NULL: all) changed now; their stored pyramid tiles are gone.
CREATE FUNCTION csdr.forget_pyramid(collections text[]) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    UPDATE csdr.tile_generations SET generation = generation + 1, changed_at = clock_timestamp()
    WHERE collections IS NULL OR collection = ANY(collections);
    DELETE FROM csdr.pyramid_tiles WHERE collections IS NULL OR collection = ANY(collections);
$$;

CREATE FUNCTION csdr.forget_deleted_collection() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    PERFORM csdr.forget_pyramid(ARRAY[OLD.id]);
    RETURN NULL;
END
$$;

CREATE TRIGGER csdr_forget_pyramid
AFTER DELETE ON pgstac.collections
FOR EACH ROW EXECUTE FUNCTION csdr.forget_deleted_collection();

CREATE FUNCTION csdr.forget_truncated_items() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    PERFORM csdr.forget_pyramid(NULL);
    RETURN NULL;
END
$$;

-- Statement-level: fires for TRUNCATE pgstac.items (which empties every partition).
CREATE TRIGGER csdr_forget_pyramid_on_truncate
AFTER TRUNCATE ON pgstac.items
FOR EACH STATEMENT EXECUTE FUNCTION csdr.forget_truncated_items();
