-- The feed's pruning (0017) could pick an event the push worker was fanning out at that moment
-- (csdr.fan_out holds it FOR UPDATE): the new delivery then named it, and the prune failed on the
-- foreign key (seen with a federation and a push worker on one busy database). Events locked by
-- a fan-out are now skipped (FOR UPDATE SKIP LOCKED, as fan_out itself claims them); the next
-- round sees their deliveries and keeps them.
CREATE OR REPLACE FUNCTION csdr.prune_feed_events(_keep interval) RETURNS bigint
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
    WHERE e.id IN (
        SELECT o.id FROM csdr.item_events o
        WHERE (o.txid, o.id) <= (boundary.txid, boundary.id)
          AND NOT EXISTS (SELECT 1 FROM csdr.deliveries d WHERE d.event_id = o.id)
        FOR UPDATE SKIP LOCKED
    );
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
