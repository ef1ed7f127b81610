-- Offline scenes and their production on demand: ingest registers an archived package as an item
-- with `order:status` = orderable (metadata, footprint, thumbnail, no COG) and remembers where the
-- package is; an order of such a scene queues one production (an ingest job) however many
-- organisations order it, and the produced item replaces the offline one for good.

CREATE TABLE csdr.offline_packages (
    collection     text NOT NULL,
    item_id        text NOT NULL,
    source         text NOT NULL,
    registered_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection, item_id)
);

-- One production per scene: `queued` while its ingest job runs, then `succeeded` or `failed`
-- (a later order of a failed scene queues it again with a new job).
CREATE TABLE csdr.productions (
    collection   text NOT NULL,
    item_id      text NOT NULL,
    job_id       uuid NOT NULL,
    status       text NOT NULL CHECK (status IN ('queued', 'succeeded', 'failed')),
    error        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    PRIMARY KEY (collection, item_id)
);
CREATE INDEX productions_queued ON csdr.productions (job_id) WHERE status = 'queued';

-- At most one queued or running production job per package, whoever queued it.
CREATE UNIQUE INDEX ingest_jobs_active_production_source ON csdr.ingest_jobs (source)
    WHERE status IN ('queued', 'running') AND options ? 'production';

-- The STAC order extension's status as a queryable: `order:status = 'orderable'` finds the offline
-- scenes, `order:status = 'succeeded'` the online ones.
SELECT pgstac.upsert_queryable(
    'order:status',
    '{"title": "Order status: orderable (offline, produced on order) or succeeded (online)",
      "type": "string",
      "enum": ["orderable", "ordered", "pending", "shipping", "succeeded", "failed", "canceled"]}'::jsonb,
    'to_text',
    'BTREE'
);
