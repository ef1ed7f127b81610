-- The catalog asks pgSTAC once per distinct item search for the WHERE and ORDER BY clauses it
-- derives from it (stac_search_to_where, sort_sqlorderby) and keeps them in memory
-- (services/catalog/src/csdr_catalog/item_search.py). Those clauses depend on pgSTAC's
-- queryables (each property's expression and wrapper) and settings (default_filter_lang,
-- context): any change to either table bumps this generation in the changing transaction, and
-- the catalog reads the generation in the same statement as a search's rows, so a clause made
-- under an older generation is made again before its rows are used.
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
