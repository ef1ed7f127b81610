-- The tiler's view of where items changed, by Web Mercator tile, and its low-zoom pyramid.
--
-- A map view at zoom 5 covers thousands of scenes; reading each for every tile takes seconds
-- (pgSTAC's own benchmark: 4.8 s per tile at z3 over 10k scenes). The tiler keeps, per
-- collection and asset, the collection's "latest, least cloudy first" mosaic as raw pixel values
-- for every WebMercatorQuad tile from z0 to csdr.pyramid_max_zoom(): the deepest level rendered
-- from the scenes, each level above from the four tiles below it (services/tiler,
-- csdr_tiler.pyramid). A stored tile is current while its generation equals the tile's
-- generation here; any write of an item under the tile bumps that.
--
-- The same generations version the tiler's mosaic tiles (ETag): every item under a tile at any
-- zoom lies under its ancestor at pyramid_max_zoom() (or the tile itself, above it).

-- z0..8: a z8 tile is 156 km wide, a few scenes across; deeper tiles read the scenes themselves.
-- Changing it means emptying csdr.tile_generations and csdr.pyramid_tiles.
CREATE FUNCTION csdr.pyramid_max_zoom() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT 8';

-- The WebMercatorQuad tiles (z, x, y) at zooms 0..maxzoom covering a lon/lat box, latitudes
-- clamped to the projection's +-85.0511 degrees (OGC 17-083r4, WebMercatorQuad).
CREATE FUNCTION csdr.tiles_of_box(box box2d, maxzoom integer)
RETURNS TABLE (z integer, x integer, y integer)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH b AS (
        SELECT greatest(-180.0, least(180.0, ST_XMin(box))) AS west,
               greatest(-180.0, least(180.0, ST_XMax(box))) AS east,
               greatest(-85.0511287798, least(85.0511287798, ST_YMin(box))) AS south,
               greatest(-85.0511287798, least(85.0511287798, ST_YMax(box))) AS north
    ), levels AS (
        SELECT zz, 2 ^ zz AS n, west, east, south, north FROM b, generate_series(0, maxzoom) zz
    ), ranges AS (
        SELECT zz, n,
               floor((west + 180) / 360 * n)::integer AS x0,
               floor((east + 180) / 360 * n)::integer AS x1,
               floor((1 - ln(tan(radians(north)) + 1 / cos(radians(north))) / pi()) / 2 * n)::integer
                   AS y0,
               floor((1 - ln(tan(radians(south)) + 1 / cos(radians(south))) / pi()) / 2 * n)::integer
                   AS y1
        FROM levels
    )
    SELECT zz, xx, yy FROM ranges,
        generate_series(greatest(x0, 0), least(x1, n::integer - 1)) xx,
        generate_series(greatest(y0, 0), least(y1, n::integer - 1)) yy
$$;

-- Item writes not yet folded into generations: one cheap row per written item row (no hot rows
-- under concurrent ingests, little cost to a bulk load), folded by csdr.fold_tile_changes().
CREATE TABLE csdr.tile_changes (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    collection text NOT NULL,
    box        box2d NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);

-- How many times items under each tile have changed, and when last.
CREATE TABLE csdr.tile_generations (
    collection text NOT NULL,
    z          smallint NOT NULL,
    x          integer NOT NULL,
    y          integer NOT NULL,
    generation bigint NOT NULL,
    changed_at timestamptz NOT NULL,
    PRIMARY KEY (collection, z, x, y)
);

-- The pyramid: an asset's pixel values (zlib-compressed bands, then a validity mask), or no data
-- when no scene lies there any more; `generation` is the tile's generation it was rendered at.
CREATE TABLE csdr.pyramid_tiles (
    collection text NOT NULL,
    asset      text NOT NULL,
    z          smallint NOT NULL,
    x          integer NOT NULL,
    y          integer NOT NULL,
    generation bigint NOT NULL,
    dtype      text,
    bands      smallint,
    data       bytea,
    rendered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection, asset, z, x, y)
);

CREATE FUNCTION csdr.record_tile_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD IS NOT DISTINCT FROM NEW THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO csdr.tile_changes (collection, box)
        VALUES (OLD.collection, Box2D(OLD.geometry));
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT')
       AND NOT (TG_OP = 'UPDATE' AND NEW.collection = OLD.collection
                AND Box2D(NEW.geometry) = Box2D(OLD.geometry)) THEN
        INSERT INTO csdr.tile_changes (collection, box)
        VALUES (NEW.collection, Box2D(NEW.geometry));
    END IF;
    RETURN NULL;
END
$$;

-- Cloned onto every partition of pgstac.items, present and future (see 0004_push.sql).
CREATE TRIGGER csdr_tile_changes
AFTER INSERT OR UPDATE OR DELETE ON pgstac.items
FOR EACH ROW EXECUTE FUNCTION csdr.record_tile_change();

-- Move pending changes into generations. Safe to run concurrently: each change row is deleted
-- (and so counted) by exactly one caller; the others wait for its row locks, then skip it.
CREATE FUNCTION csdr.fold_tile_changes() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    folded integer;
BEGIN
    WITH moved AS (
        DELETE FROM csdr.tile_changes RETURNING collection, box, changed_at
    ), tiles AS (
        SELECT m.collection, t.z, t.x, t.y, count(*) AS n, max(m.changed_at) AS changed_at
        FROM moved m, csdr.tiles_of_box(m.box, csdr.pyramid_max_zoom()) t
        GROUP BY 1, 2, 3, 4
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

-- Changes written before this migration (items already loaded) count as one change each.
INSERT INTO csdr.tile_changes (collection, box)
SELECT collection, Box2D(geometry) FROM pgstac.items;
