-- Catalog tuning for item search at a million scenes (measured by tests/bench/bench_catalog.py).
--
-- Partitioning: every collection is partitioned by year of acquisition unless its creator chose
-- otherwise. A search with a date range then reads only the years it names, and pgSTAC's
-- datetime-sorted searches walk partitions newest first and stop once the page is full. Year,
-- not month: 5 years x a dozen collections stays well under a hundred partitions (month would
-- give thousands, each planned per search). pgSTAC 0.10 files an item by its start datetime, so
-- an item whose start_datetime/end_datetime range crosses New Year is accepted and found by
-- searches of either year (checked on this pgSTAC; the partition's end_datetime constraint widens).
CREATE FUNCTION csdr.default_partition_trunc() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.partition_trunc IS NULL THEN
        NEW.partition_trunc := 'year';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER csdr_default_partition_trunc
BEFORE INSERT ON pgstac.collections
FOR EACH ROW EXECUTE FUNCTION csdr.default_partition_trunc();

-- pgSTAC runtime settings (https://stac-utils.github.io/pgstac/pgstac/#pgstac-settings).
-- context stays off: numberMatched is computed only when a client asks (count=true, counts.py),
-- which passes its own context_* thresholds; with context on, every search would pay an EXPLAIN
-- and, below the thresholds, a full count.
INSERT INTO pgstac.pgstac_settings (name, value) VALUES
    ('context', 'off'),
    ('update_collection_extent', 'false'),
    ('format_cache', 'false')
ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value;
