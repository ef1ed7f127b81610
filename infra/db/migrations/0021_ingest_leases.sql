-- Ingest jobs are claimed with a lease that the running worker's heartbeat extends: the job of a
-- worker that died, on any host, is queued again once its lease has ended, and is never run by
-- two workers at once. Each claim is one attempt row: who ran it, from when to when, and how it
-- ended ('lease-expired': the worker stopped renewing, its end is the lease's end).
ALTER TABLE csdr.ingest_jobs
    ADD COLUMN lease_until timestamptz,
    ADD COLUMN attempts    int NOT NULL DEFAULT 0;

CREATE INDEX ingest_jobs_leased ON csdr.ingest_jobs (lease_until) WHERE status = 'running';

CREATE TABLE csdr.ingest_attempts (
    job_id     uuid NOT NULL REFERENCES csdr.ingest_jobs (id) ON DELETE CASCADE,
    attempt    int NOT NULL,
    worker     text NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at   timestamptz,
    outcome    text CHECK (outcome IN ('succeeded', 'failed', 'lease-expired')),
    PRIMARY KEY (job_id, attempt),
    CHECK ((ended_at IS NULL) = (outcome IS NULL))
);
