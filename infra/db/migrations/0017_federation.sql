-- Federation: the outbox of 0004 becomes a change feed other nodes pull (csdr_federation), and
-- the peers this node mirrors are registered with their checkpoints.

-- Collection changes (created, changed or deleted: the feed reads the current row) and policy
-- changes (who may see the collection) in a table of their own beside csdr.item_events, numbered
-- from the same sequence: the feed reads both in one (txid, id) order, and the readers of
-- item_events (push, the tiler) see only item events as before.
CREATE TABLE csdr.collection_events (
    id          bigint PRIMARY KEY
                DEFAULT nextval(pg_get_serial_sequence('csdr.item_events', 'id')),
    type        text NOT NULL CHECK (type IN ('collection', 'policy')),
    collection  text NOT NULL,
    txid        xid8 NOT NULL DEFAULT pg_current_xact_id(),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The feed's order: a page is every event after the reader's (txid, id) whose transaction lies
-- below the oldest one still running, so none of them can change any more (see feed.py).
CREATE INDEX item_events_feed ON csdr.item_events (txid, id);
CREATE INDEX item_events_created_at ON csdr.item_events (created_at);
CREATE INDEX collection_events_feed ON csdr.collection_events (txid, id);
CREATE INDEX collection_events_created_at ON csdr.collection_events (created_at);

CREATE FUNCTION csdr.record_collection_event() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.content IS NOT DISTINCT FROM NEW.content THEN
        RETURN NULL;
    END IF;
    INSERT INTO csdr.collection_events (type, collection)
    VALUES ('collection', CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END);
    RETURN NULL;
END
$$;

CREATE TRIGGER csdr_collection_events
AFTER INSERT OR UPDATE OR DELETE ON pgstac.collections
FOR EACH ROW EXECUTE FUNCTION csdr.record_collection_event();

CREATE FUNCTION csdr.record_policy_event() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    INSERT INTO csdr.collection_events (type, collection)
    VALUES ('policy', CASE WHEN TG_OP = 'DELETE' THEN OLD.collection ELSE NEW.collection END);
    RETURN NULL;
END
$$;

CREATE TRIGGER csdr_policy_events
AFTER INSERT OR UPDATE OR DELETE ON csdr.collection_policies
FOR EACH ROW EXECUTE FUNCTION csdr.record_policy_event();

CREATE TRIGGER csdr_partner_events
AFTER INSERT OR UPDATE OR DELETE ON csdr.collection_partners
FOR EACH ROW EXECUTE FUNCTION csdr.record_policy_event();

-- Retention: events older than the retention period are removed up to a boundary in feed order
-- (events a push delivery still names stay, the feed no longer needs them); a reader whose
-- cursor lies before the boundary may have missed some and is answered 410.
CREATE TABLE csdr.feed_retention (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    through_txid xid8 NOT NULL,
    through_id   bigint NOT NULL,
    pruned_at    timestamptz NOT NULL DEFAULT now()
);

-- Remove the events older than `_keep` that the feed has passed; return how many went.
CREATE FUNCTION csdr.prune_feed_events(_keep interval) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    boundary record;
    removed bigint;
BEGIN
    SELECT txid, id INTO boundary FROM (
        SELECT txid, id FROM csdr.item_events WHERE created_at < now() - _keep
        UNION ALL
        SELECT txid, id FROM csdr.collection_events WHERE created_at < now() - _keep
    ) old
    WHERE txid < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY txid DESC, id DESC LIMIT 1;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    DELETE FROM csdr.item_events e
    WHERE (e.txid, e.id) <= (boundary.txid, boundary.id)
      AND NOT EXISTS (SELECT 1 FROM csdr.deliveries d WHERE d.event_id = e.id);
    GET DIAGNOSTICS removed = ROW_COUNT;
    DELETE FROM csdr.collection_events e WHERE (e.txid, e.id) <= (boundary.txid, boundary.id);
    INSERT INTO csdr.feed_retention (through_txid, through_id)
    VALUES (boundary.txid, boundary.id)
    ON CONFLICT (singleton) DO UPDATE
    SET through_txid = greatest(feed_retention.through_txid, excluded.through_txid),
        through_id = CASE WHEN excluded.through_txid >= feed_retention.through_txid
                          THEN excluded.through_id ELSE feed_retention.through_id END,
        pruned_at = now();
    RETURN removed;
END
$$;

-- The upstream nodes this node mirrors (csdr-admin peer ...), each with its feed checkpoint.
-- `api_key` is the key the peer issued to this node: the worker needs it in clear to call the peer.
CREATE TABLE csdr.federation_peers (
    name            text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    url             text NOT NULL CHECK (url ~ '^https?://'),
    api_key         text NOT NULL,
    collections     text[],
    bbox            float8[] CHECK (bbox IS NULL OR cardinality(bbox) = 4),
    intersects      jsonb,
    max_cloud       float8 CHECK (max_cloud IS NULL OR max_cloud BETWEEN 0 AND 100),
    since           timestamptz,
    assets          text NOT NULL DEFAULT 'proxy' CHECK (assets IN ('copy', 'proxy', 'lazy')),
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused')),
    node            text,
    cursor          text,
    at_head         boolean NOT NULL DEFAULT false,
    applied         bigint NOT NULL DEFAULT 0,
    refused         bigint NOT NULL DEFAULT 0,
    last_page_at    timestamptz,
    last_error      text,
    last_error_at   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
