-- The tiler's low-zoom pyramid (0011, 0013), continued: pyramids of registered searches.
--
-- A registered search (or a caller's copy of one narrowed to the collections they may see,
-- csdr_tiler.mosaics) gets a pyramid like a collection's (csdr_tiler.pyramid): its mosaic as raw
-- pixel values for every WebMercatorQuad tile from z0 to csdr.pyramid_max_zoom(), the deepest
-- level rendered from the scenes in the search's own order, each level above averaged from the
-- four below. A search layer's tile generation is the sum of its collections' generations there
-- (of every collection's when it names none): each grows with every write of an item under the
-- tile, so the sum changes whenever the layer's pixels may have.
--
-- 1. csdr.search_layers: the searches that have one, at most `max_layers` (the tiler's setting):
--    adopted when a low-zoom tile of theirs is asked for (csdr.use_search_layer; when full, a
--    new one replaces the least recently used only if that one has been unused for
--    `evict_after`, else the new search keeps being read from the scenes), and registered
--    mosaics naming collections by the tiler's refresher, into free places only and never asked
--    for until someone does (csdr.adopt_registered_searches), so that registering many
--    searches costs at most `max_layers` builds and keeps no place from a search in use. The
--    refresher drops those unused for longer than its idle setting.
-- 2. csdr.search_pyramid_tiles: their stored tiles (as csdr.pyramid_tiles), gone with the layer.
-- 3. 0013's fold also marks the search tiles a change makes stale (stale_since), and 0013's
--    forget (TRUNCATE of pgstac.items, a collection's deletion) also drops the search layers that
--    read a collection concerned (all of them for a TRUNCATE, and every layer naming no
--    collection). TRUNCATE of a single pgstac.items partition is still not seen (statement
--    triggers are not cloned onto partitions; pgSTAC never does it).

CREATE TABLE csdr.search_layers (
    search      text PRIMARY KEY,   -- pgstac.searches.hash
    collections text[],             -- the collections it reads; NULL: every one
    asked_at    timestamptz DEFAULT now(),  -- a tile last asked for; NULL: never yet
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX search_layers_collections ON csdr.search_layers USING gin (collections);

CREATE TABLE csdr.search_pyramid_tiles (
    search      text NOT NULL REFERENCES csdr.search_layers ON DELETE CASCADE,
    asset       text NOT NULL,
    z           smallint NOT NULL,
    x           integer NOT NULL,
    y           integer NOT NULL,
    generation  bigint NOT NULL,
    dtype       text,
    bands       smallint,
    data        bytea,
    rendered_at timestamptz NOT NULL DEFAULT now(),
    stale_since timestamptz,
    PRIMARY KEY (search, asset, z, x, y)
);

-- A layer over every collection sums a tile's generations across collections.
CREATE INDEX tile_generations_tile ON csdr.tile_generations (z, x, y);

-- Record a use of search layer `search` (reading `collections`, NULL: all), adopting it when
-- there is room (see 1. above); whether it has a layer now. Uses are written at most once a
-- minute per layer: a map view asks for dozens of tiles at once.
CREATE FUNCTION csdr.use_search_layer(
    search text, collections text[], max_layers integer, evict_after interval
) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    kept integer;
BEGIN
    UPDATE csdr.search_layers l SET asked_at = now()
    WHERE l.search = use_search_layer.search
      AND (l.asked_at IS NULL OR l.asked_at < now() - interval '1 minute');
    IF FOUND OR EXISTS (SELECT 1 FROM csdr.search_layers l WHERE l.search = use_search_layer.search)
    THEN
        RETURN true;
    END IF;
    IF max_layers < 1 THEN
        RETURN false;
    END IF;
    -- One admission at a time, so that concurrent ones cannot exceed the bound together.
    PERFORM pg_advisory_xact_lock(hashtext('csdr-search-layers'));
    IF EXISTS (SELECT 1 FROM csdr.search_layers l WHERE l.search = use_search_layer.search) THEN
        RETURN true;
    END IF;
    SELECT count(*) INTO kept FROM csdr.search_layers;
    IF kept >= max_layers THEN
        DELETE FROM csdr.search_layers l WHERE l.search IN (
            SELECT o.search FROM csdr.search_layers o
            WHERE o.asked_at IS NULL OR o.asked_at < now() - evict_after
            ORDER BY o.asked_at NULLS FIRST, o.created_at LIMIT kept - max_layers + 1
        );
        GET DIAGNOSTICS kept = ROW_COUNT;
        IF (SELECT count(*) FROM csdr.search_layers) >= max_layers THEN
            RETURN false;
        END IF;
    END IF;
    INSERT INTO csdr.search_layers (search, collections)
    VALUES (use_search_layer.search, use_search_layer.collections)
    ON CONFLICT DO NOTHING;
    RETURN true;
END
$$;

-- Adopt the registered mosaics naming collections that were registered (or read) since `since`
-- and have no layer, most recent first, into the free places below `max_layers`; those adopted.
CREATE FUNCTION csdr.adopt_registered_searches(max_layers integer, since timestamptz)
RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('csdr-search-layers'));
    RETURN QUERY
    INSERT INTO csdr.search_layers AS l (search, collections, asked_at)
    SELECT s.hash,
           ARRAY(SELECT c FROM jsonb_array_elements_text(s.search -> 'collections') c ORDER BY 1),
           NULL
    FROM pgstac.searches s
    WHERE s.metadata ->> 'type' = 'mosaic'
      AND jsonb_typeof(s.search -> 'collections') = 'array'
      AND jsonb_array_length(s.search -> 'collections') > 0
      AND s.lastused >= since
      AND NOT EXISTS (SELECT 1 FROM csdr.search_layers o WHERE o.search = s.hash)
    ORDER BY s.lastused DESC
    LIMIT greatest(0, max_layers - (SELECT count(*) FROM csdr.search_layers))
    ON CONFLICT DO NOTHING
    RETURNING l.search;
END
$$;

-- 0013's fold, also marking the search tiles its changes make stale.
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
    ), search_tiles AS (
        SELECT l.search, t.z, t.x, t.y, min(t.first_at) AS first_at
        FROM tiles t
        JOIN csdr.search_layers l ON l.collections IS NULL OR t.collection = ANY(l.collections)
        GROUP BY 1, 2, 3, 4
    ), searches_behind AS (
        UPDATE csdr.search_pyramid_tiles p SET stale_since = s.first_at
        FROM search_tiles s
        WHERE p.search = s.search AND p.z = s.z AND p.x = s.x AND p.y = s.y
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

-- 0013's forget, also dropping the search layers that read any of `collections` (NULL: all).
CREATE OR REPLACE FUNCTION csdr.forget_pyramid(collections text[]) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    UPDATE csdr.tile_generations SET generation = generation + 1, changed_at = clock_timestamp()
    WHERE collections IS NULL OR collection = ANY(collections);
    DELETE FROM csdr.pyramid_tiles WHERE collections IS NULL OR collection = ANY(collections);
    -- $1: the argument (a bare `collections` here would name the column).
    DELETE FROM csdr.search_layers l WHERE $1 IS NULL OR l.collections IS NULL OR l.collections && $1;
$$;
