-- Quota counters locked in the database, for downloads and orders alike.

-- The counter row of (organisation, class, period), created when missing and locked until the
-- caller's transaction ends (a racing order or download waits here, then sees the new numbers);
-- its numbers and the limit (csdr.quota_limits, else `_default`). csdr_access.charging.lock
-- calls it, and csdr.lock_order_charges for each class of an order.
-- plpgsql, not sql: its statement's plan is kept for the session (PostgreSQL 15 plans a sql
-- function's body again at every call).
CREATE FUNCTION csdr.lock_quota(_org bigint, _class text, _period date, _default integer,
    OUT used integer, OUT reserved integer, OUT scenes integer)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO csdr.quota_usage AS u (org_id, class, period_start) VALUES (_org, _class, _period)
    ON CONFLICT (org_id, class, period_start) DO UPDATE SET committed = u.committed
    RETURNING u.committed, u.reserved, coalesce((SELECT l.scenes FROM csdr.quota_limits l
        WHERE l.org_id = _org AND l.class = _class), _default)
    INTO used, reserved, scenes;
END
$$;

-- What an order is judged on, in one round trip: the counters of its classes, locked one after
-- the other in class order (byte order, as Python's sorted()), then the scenes of the order the
-- organisation holds this period already (with the order that took each). Each statement of a
-- volatile function reads a snapshot taken when it starts (READ COMMITTED), so the holdings are
-- read after the locks: what an order or download that held a counter before wrote is seen.
-- With them, whether the organisation's orders wait for approval and whether it has webhooks.
-- Returns {"counters": {class: [used, reserved, limit]}, "held": [[collection, item_id,
-- order_id]], "hold": bool, "subscribed": bool}.
CREATE FUNCTION csdr.lock_order_charges(_org bigint, _period date, _classes text[],
    _default integer, _collections text[], _items text[])
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    counters jsonb := '{}';
    quota_class text;
    counter record;
BEGIN
    FOR quota_class IN SELECT DISTINCT c COLLATE "C" FROM unnest(_classes) AS c ORDER BY 1 LOOP
        SELECT * INTO counter FROM csdr.lock_quota(_org, quota_class, _period, _default);
        counters := counters || jsonb_build_object(quota_class,
            jsonb_build_array(counter.used, counter.reserved, counter.scenes));
    END LOOP;
    RETURN jsonb_build_object('counters', counters, 'held', (
        SELECT coalesce(jsonb_agg(jsonb_build_array(e.collection, e.item_id, e.order_id)), '[]')
        FROM csdr.entitlements e
        JOIN unnest(_collections, _items) AS s (collection, item_id)
          ON e.collection = s.collection AND e.item_id = s.item_id
        WHERE e.org_id = _org AND e.period_start = _period),
        'hold', EXISTS (SELECT 1 FROM csdr.manual_approval WHERE org_id = _org),
        'subscribed', EXISTS (SELECT 1 FROM csdr.subscriptions s
            WHERE s.owner = _org AND s.status = 'active'));
END
$$;
