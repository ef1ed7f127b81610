-- Retention of ingest job records: jobs that ended (succeeded or failed) more than `_keep` ago
-- go, with their attempts (ON DELETE CASCADE, 0021); queued and running ones always stay. The
-- ingest service calls this every CSDR_INGEST_PRUNE_INTERVAL_S.
CREATE INDEX ingest_jobs_finished ON csdr.ingest_jobs (finished_at)
WHERE status IN ('succeeded', 'failed');

CREATE FUNCTION csdr.prune_ingest_jobs(_keep interval) RETURNS bigint
LANGUAGE sql AS $$
    WITH gone AS (
        DELETE FROM csdr.ingest_jobs
        WHERE status IN ('succeeded', 'failed') AND finished_at < now() - _keep
        RETURNING 1
    )
    SELECT count(*) FROM gone
$$;
