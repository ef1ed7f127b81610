-- Quotas charged by downloads, and periods from an agreement's start date (csdr_access.charging).
-- A scene's first full-resolution download by an organisation, when no order of it took the
-- charge, is an entitlement of its own: committed at once, with no order.
ALTER TABLE csdr.entitlements ALTER COLUMN order_id DROP NOT NULL;
ALTER TABLE csdr.entitlements ADD CONSTRAINT entitlements_download_committed
    CHECK (order_id IS NOT NULL OR (state = 'committed' AND downloaded_at IS NOT NULL));

-- An organisation's quota periods run from this date's anniversary each year (an agreement
-- starting 1 April: 1 April - 31 March); NULL: calendar years (UTC). `csdr-admin quota period`.
ALTER TABLE csdr.organisations ADD COLUMN quota_period_from date;

-- Scope `mirror`: a key issued to a partner node, whose full-resolution reads (mirror copies,
-- tiles proxied through this node) are node-to-node and charge no quota.
ALTER TABLE csdr.api_keys DROP CONSTRAINT api_keys_scopes_check;
ALTER TABLE csdr.api_keys ADD CONSTRAINT api_keys_scopes_check
    CHECK (scopes <@ ARRAY['read', 'ingest', 'admin', 'mirror'] AND scopes <> '{}');
