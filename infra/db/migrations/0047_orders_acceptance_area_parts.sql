-- An order's acceptance in one call (one round trip, one implicit transaction): the counters
-- locked, the holdings read, the quota judged and, when the order fits, everything written.
-- And the areas of the `source` usage measure kept cut in pieces (csdr.area_parts).

-- The quota rule, for orders and downloads alike: `requested` more scenes do not fit when they
-- exceed what is left of the limit (never below 0). csdr_access.charging.Quota.refusal says the
-- same in Python (a test holds the two together).
CREATE FUNCTION csdr.quota_refuses(_used integer, _reserved integer, _limit integer,
    _requested integer)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT _requested > greatest(0, _limit - _used - _reserved)
$$;

-- Every class an organisation has a limit or usage in for the period (at least `_class`, the
-- default class), with its limit (else `_default`) and counters: what an answer shows as its
-- quota (csdr_access.charging.snapshot_of, and csdr.accept_order after writing an order).
CREATE FUNCTION csdr.quota_snapshot(_org bigint, _period date, _default integer, _class text)
RETURNS TABLE (class text, organisation text, scenes integer, used integer, reserved integer)
LANGUAGE sql STABLE AS $$
    WITH classes AS (
        SELECT l.class FROM csdr.quota_limits l WHERE l.org_id = _org
        UNION SELECT u.class FROM csdr.quota_usage u
            WHERE u.org_id = _org AND u.period_start = _period
        UNION SELECT _class)
    SELECT c.class, o.name, coalesce(l.scenes, _default), coalesce(u.committed, 0),
           coalesce(u.reserved, 0)
    FROM classes c CROSS JOIN csdr.organisations o
    LEFT JOIN csdr.quota_limits l ON l.org_id = o.id AND l.class = c.class
    LEFT JOIN csdr.quota_usage u
        ON u.org_id = o.id AND u.class = c.class AND u.period_start = _period
    WHERE o.id = _org ORDER BY c.class
$$;
-- (sql, one SELECT, STABLE: called in FROM, it is inlined into the caller's statement, whose
-- plan is kept.)

-- The production of an offline scene, queued unless one is (as csdr_ingest.jobs.enqueue writes
-- a job, in the caller's transaction; a failed one is queued again); its job id, or NULL when
-- one was queued already or the node holds no package of the scene.
CREATE FUNCTION csdr.request_production(_collection text, _item text)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    job uuid;
BEGIN
    WITH production AS (
        INSERT INTO csdr.productions (collection, item_id, job_id, status)
        SELECT p.collection, p.item_id, gen_random_uuid(), 'queued'
        FROM csdr.offline_packages p WHERE p.collection = _collection AND p.item_id = _item
        ON CONFLICT (collection, item_id) DO UPDATE
            SET job_id = excluded.job_id, status = 'queued', error = NULL, created_at = now(),
                finished_at = NULL
            WHERE productions.status = 'failed'
        RETURNING job_id
    )
    INSERT INTO csdr.ingest_jobs (id, source, collection, options)
    SELECT production.job_id, p.source, p.collection, jsonb_build_object('production', p.item_id)
    FROM production, csdr.offline_packages p
    WHERE p.collection = _collection AND p.item_id = _item
    RETURNING id INTO job;
    RETURN job;
END
$$;

-- What an order is judged and written on, read before its acceptance (one round trip): the scenes
-- `_collections` and `_ids` name, in one row of arrays (none found: NULL), each with its
-- `order:status`, platform, first instrument and whether the node holds its archived package;
-- the organisation's terms (the agreement start date its periods run from, the quota class of
-- each collection named), its standing (`hold`: its orders wait for approval; `subscribed`: it
-- has webhooks), and the order an earlier request with the Idempotency-Key `_key` created
-- ([id, request]). A generic plan: custom ones, which the plan cache kept choosing (its arrays'
-- sizes make a generic plan look costlier), were planned again at every order (0.26-0.58 ms
-- over pgSTAC's partitions), for a query that runs in 0.06 ms either way.
CREATE FUNCTION csdr.order_lookup(_collections text[], _ids text[], _org bigint, _key text)
RETURNS TABLE (anchor date, classes jsonb, hold boolean, subscribed boolean, replay jsonb,
    collections text[], ids text[], order_statuses text[], platforms text[],
    instruments text[], archived boolean[])
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN QUERY
    SELECT (SELECT g.quota_period_from FROM csdr.organisations g WHERE g.id = _org),
           coalesce((SELECT jsonb_object_agg(q.collection, q.class) FROM csdr.quota_classes q
                     WHERE q.collection = ANY (_collections)), '{}'::jsonb),
           EXISTS (SELECT 1 FROM csdr.manual_approval m WHERE m.org_id = _org),
           EXISTS (SELECT 1 FROM csdr.subscriptions s
                   WHERE s.owner = _org AND s.status = 'active'),
           (SELECT jsonb_build_array(o.id, o.request) FROM csdr.orders o
            WHERE o.org_id = _org AND o.idempotency_key = _key),
           array_agg(i.collection), array_agg(i.id),
           array_agg(i.content #>> '{properties,order:status}'),
           array_agg(i.content #>> '{properties,platform}'),
           array_agg(i.content #>> '{properties,instruments,0}'),
           array_agg(EXISTS (SELECT 1 FROM csdr.offline_packages p
                             WHERE p.collection = i.collection AND p.item_id = i.id))
    FROM pgstac.items i
    JOIN unnest(_collections, _ids) AS want (collection, id)
      ON i.collection = want.collection AND i.id = want.id;
END
$$;

-- Judge an order and, when it fits and `_write`, write it: the counters of its classes locked
-- in class order (byte order, as Python's sorted()), then the scenes the organisation holds this
-- period read after the locks (each statement of a volatile function takes its own snapshot
-- under READ COMMITTED: what an order or download that held a counter before wrote is seen);
-- an item is charged unless its scene is held. Refused (some class's charged scenes do not fit,
-- csdr.quota_refuses) or not `_write` (a dry run): nothing is written. Else the order, its
-- history (in the given order), items, ledger rows (`reserved` for each charge, `released` for
-- a charge delivered at once: items with `now`), counter changes and charges, then its events
-- and productions.
--   _items: [{collection, item_id, class, platform, instrument, status, now}], in order;
--   _history: [{collection, item_id, status, reason_code, reason_text}];
--   _events: [[type, payload]] (csdr.enqueue_order_event); _produce: [[collection, item_id]]
--   (csdr.request_production, in this order).
-- Returns {"counters": {class: [used, reserved, limit]} (before the order), "held":
-- [[collection, item_id, order_id]], "refused": bool, "quota": [[class, organisation, limit,
-- used, reserved]] (after the order; only when written)}.
-- plpgsql: its statements' plans are kept for the session.
CREATE FUNCTION csdr.accept_order(_org bigint, _period date, _default integer, _write boolean,
    _at timestamptz, _order uuid, _status text, _key text, _request jsonb, _expires timestamptz,
    _hold boolean, _items jsonb, _history jsonb, _events jsonb, _produce jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    counters jsonb := '{}';
    quota_class text;
    counter record;
    held jsonb;
    held_keys jsonb;
    refused boolean;
    event jsonb;
    scene jsonb;
BEGIN
    FOR quota_class IN
        SELECT DISTINCT i.class COLLATE "C" FROM jsonb_to_recordset(_items) AS i (class text)
        ORDER BY 1
    LOOP
        SELECT * INTO counter FROM csdr.lock_quota(_org, quota_class, _period, _default);
        counters := counters || jsonb_build_object(quota_class,
            jsonb_build_array(counter.used, counter.reserved, counter.scenes));
    END LOOP;
    SELECT coalesce(jsonb_agg(jsonb_build_array(e.collection, e.item_id, e.order_id)), '[]'),
           coalesce(jsonb_object_agg(jsonb_build_array(e.collection, e.item_id)::text, true),
               '{}')
    INTO held, held_keys
    FROM csdr.entitlements e
    JOIN jsonb_to_recordset(_items) AS s (collection text, item_id text)
      ON e.collection = s.collection AND e.item_id = s.item_id
    WHERE e.org_id = _org AND e.period_start = _period;
    SELECT coalesce(bool_or(csdr.quota_refuses((counters->r.class->>0)::integer,
               (counters->r.class->>1)::integer, (counters->r.class->>2)::integer, r.n::integer)),
           false)
    INTO refused
    FROM (SELECT i.class, count(*) AS n FROM jsonb_to_recordset(_items)
              AS i (collection text, item_id text, class text)
          WHERE NOT held_keys ? jsonb_build_array(i.collection, i.item_id)::text
          GROUP BY i.class) r;
    IF refused OR NOT _write THEN
        RETURN jsonb_build_object('counters', counters, 'held', held, 'refused', refused);
    END IF;

    -- One statement (the foreign keys between its parts are checked at its end); one for the
    -- ledger rows in it, so their monthly sums' trigger runs once.
    WITH scenes AS (
        SELECT i.*, NOT held_keys ? jsonb_build_array(i.collection, i.item_id)::text AS charged
        FROM ROWS FROM (jsonb_to_recordset(_items) AS (collection text, item_id text,
            class text, platform text, instrument text, status text, now boolean))
            WITH ORDINALITY AS i (collection, item_id, class, platform, instrument, status, now, n)
    ), new_order AS (
        INSERT INTO csdr.orders (id, org_id, status, idempotency_key, request, period_start,
            created_at, updated_at, links_expire_at, awaiting_approval)
        VALUES (_order, _org, _status, _key, _request, _period, _at, _at, _expires, _hold)
    ), new_history AS (
        INSERT INTO csdr.order_history (order_id, collection, item_id, at, status, reason_code,
            reason_text)
        SELECT _order, h.collection, h.item_id, _at, h.status, h.reason_code, h.reason_text
        FROM ROWS FROM (jsonb_to_recordset(_history) AS (collection text, item_id text,
            status text, reason_code text, reason_text text)) WITH ORDINALITY
            AS h (collection, item_id, status, reason_code, reason_text, n)
        ORDER BY h.n
    ), new_items AS (
        INSERT INTO csdr.order_items (order_id, collection, item_id, class, platform,
            instrument, status, charged, updated_at)
        SELECT _order, s.collection, s.item_id, s.class, s.platform, s.instrument, s.status,
               s.charged, _at
        FROM scenes s
    ), new_ledger AS (
        INSERT INTO csdr.usage_ledger (at, org_id, country, class, period_start, collection,
            item_id, platform, instrument, order_id, kind, delta)
        SELECT _at, _org, o.country, s.class, _period, s.collection, s.item_id, s.platform,
               s.instrument, _order, k.kind, 1
        FROM scenes s
        CROSS JOIN (VALUES (1, 'reserved'), (2, 'released')) AS k (n, kind)
        JOIN csdr.organisations o ON o.id = _org
        WHERE s.charged AND (k.kind = 'reserved' OR s.now)
        ORDER BY k.n, s.n
    ), counted AS (
        UPDATE csdr.quota_usage q
        SET reserved = q.reserved + c.reserved, committed = q.committed + c.committed
        FROM (SELECT s.class, count(*) FILTER (WHERE NOT s.now) AS reserved,
                     count(*) FILTER (WHERE s.now) AS committed
              FROM scenes s WHERE s.charged GROUP BY s.class) c
        WHERE q.org_id = _org AND q.class = c.class AND q.period_start = _period
    )
    INSERT INTO csdr.entitlements (org_id, period_start, collection, item_id, class, state,
        order_id)
    SELECT _org, _period, s.collection, s.item_id, s.class,
           CASE WHEN s.now THEN 'committed' ELSE 'reserved' END, _order
    FROM scenes s WHERE s.charged;
    FOR event IN SELECT e FROM jsonb_array_elements(_events) AS e LOOP
        PERFORM csdr.enqueue_order_event(_org, _order, event->>0, event->1);
    END LOOP;
    FOR scene IN SELECT p FROM jsonb_array_elements(_produce) AS p LOOP
        PERFORM csdr.request_production(scene->>0, scene->>1);
    END LOOP;
    RETURN jsonb_build_object('counters', counters, 'held', held, 'refused', false,
        'quota', (SELECT jsonb_agg(jsonb_build_array(s.class, s.organisation, s.scenes, s.used,
            s.reserved)) FROM csdr.quota_snapshot(_org, _period, _default, 'all') s));
END
$$;

-- Replaced by csdr.accept_order.
DROP FUNCTION csdr.lock_order_charges(bigint, date, text[], integer, text[], text[]);

-- Every area of the `source` usage measure cut into pieces of at most 64 vertices
-- (ST_Subdivide: tight index boxes, cheap exact tests against pgSTAC's footprints), named as
-- csdr_orders.stats.SOURCE_PAIRS names areas: `country:<code>` (csdr.country_areas) and
-- `org:<id>` (csdr.organisation_areas). Kept by the triggers below in the writing transaction,
-- so a report reads the pieces with their statistics instead of cutting the areas each time
-- (ST_Subdivide is estimated at 1,000 pieces an area: sorts instead of hash aggregates).
CREATE TABLE csdr.area_parts (
    area  text NOT NULL,
    geom  geometry(Geometry, 4326) NOT NULL
);
CREATE INDEX area_parts_area ON csdr.area_parts (area);

-- Areas change seldom (a Natural Earth load, `csdr-admin org area`): each change of a table
-- cuts that table's areas again, whole.
CREATE FUNCTION csdr.cut_country_areas() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM csdr.area_parts WHERE area LIKE 'country:%';
    INSERT INTO csdr.area_parts (area, geom)
    SELECT 'country:' || c.country, ST_Subdivide(c.geom, 64) FROM csdr.country_areas c;
    RETURN NULL;
END
$$;

CREATE FUNCTION csdr.cut_organisation_areas() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM csdr.area_parts WHERE area LIKE 'org:%';
    INSERT INTO csdr.area_parts (area, geom)
    SELECT 'org:' || a.org_id, ST_Subdivide(a.geom, 64) FROM csdr.organisation_areas a;
    RETURN NULL;
END
$$;

CREATE TRIGGER country_areas_parts AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
ON csdr.country_areas FOR EACH STATEMENT EXECUTE FUNCTION csdr.cut_country_areas();
CREATE TRIGGER organisation_areas_parts AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
ON csdr.organisation_areas FOR EACH STATEMENT EXECUTE FUNCTION csdr.cut_organisation_areas();

-- The areas there are already.
INSERT INTO csdr.area_parts (area, geom)
SELECT 'country:' || c.country, ST_Subdivide(c.geom, 64) FROM csdr.country_areas c
UNION ALL SELECT 'org:' || a.org_id, ST_Subdivide(a.geom, 64) FROM csdr.organisation_areas a;
ANALYZE csdr.area_parts;
