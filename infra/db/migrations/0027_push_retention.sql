-- Retention of push deliveries: delivered and dead ones older than `_keep` are removed (the
-- push service calls this every CSDR_PUSH_PRUNE_INTERVAL_S); pending ones always stay. Events no
-- delivery names any more are then the feed's to prune (csdr.prune_feed_events, 0017).
CREATE INDEX deliveries_finished ON csdr.deliveries (coalesce(delivered_at, dead_at))
WHERE status IN ('delivered', 'dead');

CREATE FUNCTION csdr.prune_deliveries(_keep interval) RETURNS bigint
LANGUAGE sql AS $$
    WITH gone AS (
        DELETE FROM csdr.deliveries
        WHERE status IN ('delivered', 'dead')
          AND coalesce(delivered_at, dead_at) < now() - _keep
        RETURNING 1
    )
    SELECT count(*) FROM gone
$$;
