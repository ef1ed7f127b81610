-- Ingest jobs: the durable queue behind POST /jobs. Workers claim rows with FOR UPDATE SKIP LOCKED,
-- so several ingest processes can share one queue and a restart loses nothing.
CREATE TABLE csdr.ingest_jobs (
    id          uuid PRIMARY KEY,
    source      text NOT NULL,
    collection  text,
    options     jsonb NOT NULL DEFAULT '{}'::jsonb,
    status      text NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    items       jsonb NOT NULL DEFAULT '[]'::jsonb,
    error       jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    finished_at timestamptz,
    worker      text
);

CREATE INDEX ingest_jobs_queued ON csdr.ingest_jobs (created_at) WHERE status = 'queued';
