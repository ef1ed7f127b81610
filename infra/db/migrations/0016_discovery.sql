-- Discovery (services/discovery): when each collection's discovery record last changed, and
-- whether the collection was removed, so OAI-PMH can answer `from`/`until` harvests and keep
-- removed collections as deleted records (Identify: deletedRecord=persistent). The records
-- themselves are read live from pgstac.collections; only the datestamps live here.
-- A collection hidden from anonymous callers (csdr.collection_policies) is a deleted record
-- too: a policy change stamps the collection, so an incremental harvest sees it go and return.
-- `exposed`: an anonymous caller could once see the collection; one that never was public is
-- never named, not even as a deleted record.
CREATE TABLE csdr.discovery_changes (
    collection  text PRIMARY KEY,
    changed_at  timestamptz NOT NULL,
    removed     boolean NOT NULL DEFAULT false,
    exposed     boolean NOT NULL DEFAULT false
);
CREATE INDEX discovery_changes_changed_at ON csdr.discovery_changes (changed_at, collection);

-- Anonymous visibility is csdr_access's one rule (csdr.visible_collections, migration 0009).
INSERT INTO csdr.discovery_changes (collection, changed_at, exposed)
SELECT id, now(), id IN (SELECT csdr.visible_collections(false, false, NULL))
FROM pgstac.collections;

-- clock_timestamp(), not now(): two changes in one long transaction get their own stamps.
CREATE FUNCTION csdr.stamp_discovery_change(_collection text, _removed boolean) RETURNS void
LANGUAGE sql AS $$
INSERT INTO csdr.discovery_changes AS d (collection, changed_at, removed, exposed)
VALUES (_collection, clock_timestamp(), _removed,
        _collection IN (SELECT csdr.visible_collections(false, false, NULL)))
ON CONFLICT (collection) DO UPDATE
SET changed_at = EXCLUDED.changed_at, removed = EXCLUDED.removed,
    exposed = d.exposed OR EXCLUDED.exposed
$$;

CREATE FUNCTION csdr.discovery_collection_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND (TG_OP = 'DELETE' OR OLD.id <> NEW.id) THEN
        PERFORM csdr.stamp_discovery_change(OLD.id, true);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM csdr.stamp_discovery_change(NEW.id, false);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER csdr_discovery_changes
AFTER INSERT OR UPDATE OR DELETE ON pgstac.collections
FOR EACH ROW EXECUTE FUNCTION csdr.discovery_collection_changed();

-- A policy row changed: the collection's visibility may have changed; stamp it if it exists.
CREATE FUNCTION csdr.discovery_policy_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    _collection text := CASE WHEN TG_OP = 'DELETE' THEN OLD.collection ELSE NEW.collection END;
BEGIN
    IF EXISTS (SELECT 1 FROM csdr.discovery_changes WHERE collection = _collection AND NOT removed)
    THEN
        PERFORM csdr.stamp_discovery_change(_collection, false);
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.collection <> NEW.collection AND EXISTS (
        SELECT 1 FROM csdr.discovery_changes WHERE collection = OLD.collection AND NOT removed)
    THEN
        PERFORM csdr.stamp_discovery_change(OLD.collection, false);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER csdr_discovery_changes
AFTER INSERT OR UPDATE OR DELETE ON csdr.collection_policies
FOR EACH ROW EXECUTE FUNCTION csdr.discovery_policy_changed();
