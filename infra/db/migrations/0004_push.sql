-- Push: a durable outbox of item events written by the database in the item's own transaction,
-- subscriptions (saved searches with a webhook), one delivery row per (subscription, event), and
-- dead letters (deliveries that used up their attempts). The push worker (services/push) drains it.

-- One row per change of a pgSTAC item. Written by a trigger on pgstac.items, so every writer
-- (ingest, the transactions API, pypgstac load, plain SQL) produces it and a rolled-back write
-- produces none. `item` is filled at fan-out with the hydrated STAC item as it was then.
CREATE TABLE csdr.item_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type         text NOT NULL CHECK (type IN ('created', 'updated', 'deleted')),
    collection   text NOT NULL,
    item_id      text NOT NULL,
    row_md5      text NOT NULL,
    txid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    created_at   timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    item         jsonb
);
CREATE INDEX item_events_unprocessed ON csdr.item_events (id) WHERE processed_at IS NULL;
CREATE INDEX item_events_by_item ON csdr.item_events (collection, item_id, id DESC);

-- created / updated / deleted for one row of pgstac.items. pgSTAC replaces an item by DELETE +
-- INSERT in one transaction (upsert_item, update_item, the items_staging_upsert trigger), and
-- repartition() drops a collection's partitions and inserts the same rows again: the INSERT branch
-- turns the first into one `updated` event and ignores rows whose content did not change.
CREATE FUNCTION csdr.record_item_event() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    latest csdr.item_events%ROWTYPE;
    digest text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO csdr.item_events (type, collection, item_id, row_md5)
        VALUES ('deleted', OLD.collection, OLD.id, md5(OLD::text));
        RETURN NULL;
    END IF;
    digest := md5(NEW::text);
    IF TG_OP = 'UPDATE' THEN
        IF md5(OLD::text) = digest THEN
            RETURN NULL;
        END IF;
        INSERT INTO csdr.item_events (type, collection, item_id, row_md5)
        VALUES ('updated', NEW.collection, NEW.id, digest);
    ELSE
        SELECT * INTO latest FROM csdr.item_events
        WHERE collection = NEW.collection AND item_id = NEW.id ORDER BY id DESC LIMIT 1;
        IF FOUND AND latest.type = 'deleted' AND latest.txid = pg_current_xact_id() THEN
            IF latest.row_md5 = digest THEN
                DELETE FROM csdr.item_events WHERE id = latest.id;
                RETURN NULL;
            END IF;
            UPDATE csdr.item_events SET type = 'updated', row_md5 = digest WHERE id = latest.id;
        ELSIF FOUND AND latest.type <> 'deleted' THEN
            IF latest.row_md5 = digest THEN
                RETURN NULL;
            END IF;
            INSERT INTO csdr.item_events (type, collection, item_id, row_md5)
            VALUES ('updated', NEW.collection, NEW.id, digest);
        ELSE
            INSERT INTO csdr.item_events (type, collection, item_id, row_md5)
            VALUES ('created', NEW.collection, NEW.id, digest);
        END IF;
    END IF;
    -- Delivered at commit, once per transaction (identical notifications are folded).
    PERFORM pg_notify('csdr_item_events', '');
    RETURN NULL;
END
$$;

-- A row trigger on the partitioned parent is cloned onto every partition, present and future
-- (PostgreSQL >= 11), including those pgSTAC's check_partition() creates on first insert.
CREATE TRIGGER csdr_item_events
AFTER INSERT OR UPDATE OR DELETE ON pgstac.items
FOR EACH ROW EXECUTE FUNCTION csdr.record_item_event();

-- A subscription is a saved search (collections, area, CQL2 filter) with a webhook.
-- `owner` names the principal that created it; NULL until access control provides principals.
CREATE TABLE csdr.subscriptions (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner           text,
    collections     text[],
    area            jsonb,
    geometry        geometry(Geometry, 4326),
    filter          jsonb,
    filter_where    text,
    webhook_url     text NOT NULL,
    webhook_secret  text NOT NULL,
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused')),
    paused_reason   text,
    failing_since   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscriptions_geometry ON csdr.subscriptions USING gist (geometry);
CREATE INDEX subscriptions_owner ON csdr.subscriptions (owner);

-- One delivery per matching (subscription, event); its id is the webhook-id, the receivers'
-- idempotency key. A claimed delivery's next_attempt_at is pushed one lease ahead, so a worker
-- that dies mid-delivery leaves it to be claimed again. `payload` is set only for test events.
CREATE TABLE csdr.deliveries (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    subscription_id  uuid NOT NULL REFERENCES csdr.subscriptions (id) ON DELETE CASCADE,
    event_id         bigint REFERENCES csdr.item_events (id),
    type             text NOT NULL,
    payload          jsonb,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_attempt_at  timestamptz,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    dead_at          timestamptz,
    UNIQUE (subscription_id, event_id)
);
CREATE INDEX deliveries_due ON csdr.deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_by_subscription ON csdr.deliveries (subscription_id, created_at DESC);
CREATE INDEX deliveries_by_event ON csdr.deliveries (event_id);

-- Dead letters: deliveries that used up their attempts, kept for inspection and redelivery.
CREATE VIEW csdr.dead_letters AS
SELECT * FROM csdr.deliveries WHERE status = 'dead';

-- The subscriptions an item matches: collections and area through the GiST index, then each
-- distinct CQL2 filter (compiled to SQL by pgSTAC's stac_search_to_where) evaluated once on the row.
CREATE FUNCTION csdr.matching_subscriptions(_item pgstac.items) RETURNS SETOF uuid
LANGUAGE plpgsql STABLE SET search_path = pgstac, public AS $$
DECLARE
    candidates record;
    matched boolean;
BEGIN
    FOR candidates IN
        SELECT filter_where, array_agg(id) AS ids
        FROM csdr.subscriptions
        WHERE (collections IS NULL OR _item.collection = ANY (collections))
          AND (geometry IS NULL OR st_intersects(geometry, _item.geometry))
        GROUP BY filter_where
    LOOP
        IF candidates.filter_where IS NULL THEN
            matched := true;
        ELSE
            EXECUTE format(
                'SELECT EXISTS (SELECT 1 FROM (SELECT ($1).*) AS items WHERE %s)',
                candidates.filter_where
            ) INTO matched USING _item;
        END IF;
        IF matched THEN
            RETURN QUERY SELECT unnest(candidates.ids);
        END IF;
    END LOOP;
END
$$;

-- Fan out up to _limit unprocessed events into deliveries, in the caller's transaction; several
-- workers may call it at once (SKIP LOCKED). Notifies csdr_deliveries when it created any.
CREATE FUNCTION csdr.fan_out(_limit integer, OUT events integer, OUT deliveries integer)
LANGUAGE plpgsql SET search_path = pgstac, public AS $$
DECLARE
    event record;
    found_item pgstac.items%ROWTYPE;
    created integer;
BEGIN
    events := 0;
    deliveries := 0;
    FOR event IN
        SELECT id, type, collection, item_id FROM csdr.item_events
        WHERE processed_at IS NULL ORDER BY id LIMIT _limit FOR UPDATE SKIP LOCKED
    LOOP
        events := events + 1;
        SELECT * INTO found_item FROM pgstac.items
        WHERE collection = event.collection AND id = event.item_id;
        IF event.type = 'deleted' OR NOT FOUND THEN
            UPDATE csdr.item_events SET processed_at = now() WHERE id = event.id;
            CONTINUE;
        END IF;
        INSERT INTO csdr.deliveries (subscription_id, event_id, type)
        SELECT m, event.id, event.type FROM csdr.matching_subscriptions(found_item) AS m
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS created = ROW_COUNT;
        deliveries := deliveries + created;
        UPDATE csdr.item_events
        SET processed_at = now(), item = content_hydrate(found_item)
        WHERE id = event.id;
    END LOOP;
    IF deliveries > 0 THEN
        PERFORM pg_notify('csdr_deliveries', '');
    END IF;
END
$$;
