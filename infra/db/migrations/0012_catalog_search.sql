-- Item search at a million scenes (services/catalog/src/csdr_catalog/item_search.py, measured by
-- tests/bench/bench_catalog.py).

-- 1. The catalog asks pgSTAC once per distinct item search for the WHERE and ORDER BY clauses it
-- derives from it (stac_search_to_where, sort_sqlorderby) and keeps them in memory. Those clauses
-- depend on pgSTAC's queryables (each property's expression and wrapper) and settings
-- (default_filter_lang, context): any change to either table bumps this generation in the
-- changing transaction, and the catalog reads the generation in the same statement as a search's
-- rows, so a clause made under an older generation is made again before its rows are used.
CREATE TABLE csdr.search_generation (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    generation bigint NOT NULL
);
INSERT INTO csdr.search_generation (generation) VALUES (1);

CREATE FUNCTION csdr.bump_search_generation() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    UPDATE csdr.search_generation SET generation = generation + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER csdr_search_generation
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pgstac.queryables
FOR EACH STATEMENT EXECUTE FUNCTION csdr.bump_search_generation();

CREATE TRIGGER csdr_search_generation
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pgstac.pgstac_settings
FOR EACH STATEMENT EXECUTE FUNCTION csdr.bump_search_generation();

-- 2. The search partners make most, an area, a period and a cloud-cover ceiling
-- (bbox + datetime + eo:cloud_cover < n), answered from one index: footprint, acquisition time
-- and cloud cover together in a GiST index (btree_gist, which pgSTAC installs, for the last two).
-- With only pgSTAC's one-property indexes PostgreSQL ANDs the footprint's bitmap with the cloud
-- cover's, a scan of a fifth of every year partition's cloud-cover index: 7-10 ms for a 5-degree
-- box over half a year at a million items, 4-6 ms with this index. Made on pgstac.items, so
-- PostgreSQL builds it on every partition, present and future; and on
-- pgstac.queryable_index_template, where pgSTAC looks for the indexes items carries of its own
-- (the "structural" indexes of queryable_indexes), so that its partition maintenance does not
-- take the partitions' copies for orphans to drop. The cloud-cover expression is migration
-- 0003's queryable.
CREATE INDEX items_footprint_time_cloud ON pgstac.items
    USING gist (geometry, datetime, pgstac.to_float(content->'properties'->'eo:cloud_cover'));
CREATE INDEX queryable_index_template_footprint_time_cloud ON pgstac.queryable_index_template
    USING gist (geometry, datetime, pgstac.to_float(content->'properties'->'eo:cloud_cover'));
