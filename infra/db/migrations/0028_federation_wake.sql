-- A peer's push service can wake this node's worker (csdr-admin peer add --push URL): the worker
-- subscribes there to the peer's changes, the webhook being this node's wake-up route, and keeps
-- the subscription's id. `lag_events`: events the peer still had after the last page read.
ALTER TABLE csdr.federation_peers
    ADD COLUMN push_url text CHECK (push_url ~ '^https?://'),
    ADD COLUMN wake_subscription uuid,
    ADD COLUMN lag_events bigint;
