-- Orders and yearly quotas (services/orders): an organisation orders scenes, each scene is charged
-- once per organisation, period and quota class, and every charge, refund, delivery and download
-- is a row of an append-only ledger from which the usage statistics are summed.

-- Quota classes ("1000 scenes a year per resolution level"): a collection without a row is `all`.
CREATE TABLE csdr.quota_classes (
    collection  text PRIMARY KEY,
    class       text NOT NULL CHECK (class ~ '^[a-z0-9][a-z0-9_-]{0,39}$')
);

-- The standing limit of an organisation per class (scenes per period); without a row the
-- service's default (1000) applies.
CREATE TABLE csdr.quota_limits (
    org_id      bigint NOT NULL REFERENCES csdr.organisations (id) ON DELETE CASCADE,
    class       text NOT NULL CHECK (class ~ '^[a-z0-9][a-z0-9_-]{0,39}$'),
    scenes      integer NOT NULL CHECK (scenes >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, class)
);

-- One counter row per (organisation, class, period): acceptance locks it (FOR UPDATE), so two
-- racing orders are judged one after the other and never overrun the limit.
CREATE TABLE csdr.quota_usage (
    org_id        bigint NOT NULL REFERENCES csdr.organisations (id),
    class         text NOT NULL,
    period_start  date NOT NULL,
    committed     integer NOT NULL DEFAULT 0 CHECK (committed >= 0),
    reserved      integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    PRIMARY KEY (org_id, class, period_start)
);

CREATE TABLE csdr.orders (
    id               uuid PRIMARY KEY,
    org_id           bigint NOT NULL REFERENCES csdr.organisations (id),
    status           text NOT NULL CHECK (status IN
                     ('ordered', 'pending', 'shipping', 'succeeded', 'partial', 'failed', 'canceled')),
    idempotency_key  text,
    request          jsonb NOT NULL,
    period_start     date NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    links_expire_at  timestamptz NOT NULL,
    awaiting_approval boolean NOT NULL DEFAULT false,
    UNIQUE (org_id, idempotency_key)
);

-- Organisations whose orders wait for an administrator's approval (`csdr-admin quota approval`).
CREATE TABLE csdr.manual_approval (
    org_id  bigint PRIMARY KEY REFERENCES csdr.organisations (id) ON DELETE CASCADE
);
CREATE INDEX orders_by_org ON csdr.orders (org_id, created_at DESC);

-- Each ordered scene with its own status; `charged`: this order took the organisation's charge
-- for the scene (false: it already held it this period, the item is free).
CREATE TABLE csdr.order_items (
    order_id    uuid NOT NULL REFERENCES csdr.orders (id),
    collection  text NOT NULL,
    item_id     text NOT NULL,
    class       text NOT NULL,
    platform    text,
    instrument  text,
    status      text NOT NULL CHECK (status IN
                ('ordered', 'pending', 'shipping', 'succeeded', 'failed', 'canceled')),
    charged     boolean NOT NULL,
    reason      text,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (order_id, collection, item_id)
);
CREATE INDEX order_items_waiting ON csdr.order_items (collection, item_id)
    WHERE status IN ('ordered', 'pending', 'shipping');

-- A scene charged to an organisation in a period: reserved at acceptance, committed at delivery,
-- deleted when refunded (the ledger keeps the story). Its key makes a charge happen once.
CREATE TABLE csdr.entitlements (
    org_id         bigint NOT NULL REFERENCES csdr.organisations (id),
    period_start   date NOT NULL,
    collection     text NOT NULL,
    item_id        text NOT NULL,
    class          text NOT NULL,
    state          text NOT NULL CHECK (state IN ('reserved', 'committed')),
    order_id       uuid NOT NULL REFERENCES csdr.orders (id),
    downloaded_at  timestamptz,
    PRIMARY KEY (org_id, period_start, collection, item_id)
);

-- Append-only: every change of an order or of one of its items, with the reason.
CREATE TABLE csdr.order_history (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id     uuid NOT NULL REFERENCES csdr.orders (id),
    collection   text,
    item_id      text,
    at           timestamptz NOT NULL,
    status       text NOT NULL,
    reason_code  text,
    reason_text  text
);
CREATE INDEX order_history_by_order ON csdr.order_history (order_id, id);

-- Append-only usage ledger: +1/-1 per scene and organisation. ordered = reserved + refunded,
-- released = delivered scenes, downloaded = scenes downloaded at least once.
CREATE TABLE csdr.usage_ledger (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            timestamptz NOT NULL,
    org_id        bigint NOT NULL REFERENCES csdr.organisations (id),
    country       char(2) NOT NULL,
    class         text NOT NULL,
    period_start  date NOT NULL,
    collection    text NOT NULL,
    item_id       text NOT NULL,
    platform      text,
    instrument    text,
    order_id      uuid,
    kind          text NOT NULL CHECK (kind IN ('reserved', 'refunded', 'released', 'downloaded')),
    delta         smallint NOT NULL CHECK (delta IN (-1, 1))
);
CREATE INDEX usage_ledger_at ON csdr.usage_ledger (at);
CREATE INDEX usage_ledger_org_at ON csdr.usage_ledger (org_id, at);

-- The ledger summed per month (UTC), organisation, class, collection, platform, instrument and
-- kind, kept by a statement trigger in the inserting transaction: reports over whole months
-- read these few rows instead of every ledger row, and still add up to the ledger exactly.
CREATE TABLE csdr.usage_monthly (
    month       date NOT NULL,
    org_id      bigint NOT NULL,
    country     char(2) NOT NULL,
    class       text NOT NULL,
    collection  text NOT NULL,
    platform    text NOT NULL,
    instrument  text NOT NULL,
    kind        text NOT NULL,
    total       bigint NOT NULL,
    PRIMARY KEY (month, org_id, class, collection, platform, instrument, kind)
);

CREATE FUNCTION csdr.sum_usage_monthly() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO csdr.usage_monthly AS m
        (month, org_id, country, class, collection, platform, instrument, kind, total)
    SELECT date_trunc('month', at AT TIME ZONE 'UTC')::date, org_id, country, class, collection,
           coalesce(platform, ''), coalesce(instrument, ''), kind, sum(delta)
    FROM new_rows GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
    ORDER BY 1, 2, 4, 5, 6, 7, 8  -- one lock order for concurrent inserts
    ON CONFLICT (month, org_id, class, collection, platform, instrument, kind)
    DO UPDATE SET total = m.total + excluded.total;
    RETURN NULL;
END
$$;

CREATE TRIGGER usage_ledger_monthly AFTER INSERT ON csdr.usage_ledger
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION csdr.sum_usage_monthly();

CREATE FUNCTION csdr.refuse_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: rows are never updated or deleted', TG_TABLE_NAME;
END
$$;

CREATE TRIGGER usage_ledger_append_only BEFORE UPDATE OR DELETE ON csdr.usage_ledger
FOR EACH ROW EXECUTE FUNCTION csdr.refuse_rewrite();
CREATE TRIGGER order_history_append_only BEFORE UPDATE OR DELETE ON csdr.order_history
FOR EACH ROW EXECUTE FUNCTION csdr.refuse_rewrite();

-- Order progress through push's outbox (0004): one delivery per distinct webhook URL of the
-- organisation's active subscriptions, with the event in `payload` (as push's test events), sent
-- by the push worker with its signing, retries and dead letters. Called in the order's own
-- transaction, so an event exists exactly when the change it reports was committed. The event's
-- `sequence` (its place in the order's history, which orders the events of one transaction) is
-- the history's length now unless the caller gives it.
CREATE FUNCTION csdr.enqueue_order_event(_org bigint, _order uuid, _type text, _payload jsonb)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    created integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM csdr.subscriptions s WHERE s.owner = _org AND s.status = 'active')
    THEN
        RETURN 0;
    END IF;
    IF NOT _payload ? 'sequence' THEN
        _payload := _payload || jsonb_build_object('sequence',
            (SELECT count(*) FROM csdr.order_history h WHERE h.order_id = _order));
    END IF;
    INSERT INTO csdr.deliveries (subscription_id, type, payload)
    SELECT DISTINCT ON (s.webhook_url) s.id, _type, _payload
    FROM csdr.subscriptions s
    WHERE s.owner = _org AND s.status = 'active'
    ORDER BY s.webhook_url, s.created_at;
    GET DIAGNOSTICS created = ROW_COUNT;
    IF created > 0 THEN
        PERFORM pg_notify('csdr_deliveries', '');
    END IF;
    RETURN created;
END
$$;
