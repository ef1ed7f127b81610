-- Inbox packages become ingest jobs; at most one queued or running job per inbox file, so a
-- watcher that rescans (or restarts, or runs in two processes) never queues a package twice.
CREATE UNIQUE INDEX ingest_jobs_active_inbox_source ON csdr.ingest_jobs (source)
    WHERE status IN ('queued', 'running') AND options ? 'inbox';
