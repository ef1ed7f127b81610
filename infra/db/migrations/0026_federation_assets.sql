-- Asset copies of mirrored items (peers registered with `--assets copy`): one row per asset to
-- copy, written in the transaction that applies the item (csdr_federation.sync), claimed by the
-- federation worker's copier with a lease (a copier that dies leaves a row whose lease ends; the
-- next claim resumes its partial file), done when the verified copy replaced the origin's href.
CREATE TABLE csdr.federation_assets (
    collection  text NOT NULL,
    item_id     text NOT NULL,
    asset       text NOT NULL,
    peer        text NOT NULL REFERENCES csdr.federation_peers (name) ON DELETE CASCADE,
    source      text NOT NULL,
    size        bigint,
    checksum    text,
    path        text NOT NULL,
    status      text NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'copied', 'failed')),
    attempts    integer NOT NULL DEFAULT 0,
    due_at      timestamptz NOT NULL DEFAULT now(),
    lease_until timestamptz,
    last_error  text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection, item_id, asset)
);

CREATE INDEX federation_assets_due ON csdr.federation_assets (due_at)
WHERE status IN ('queued', 'running');
