-- A disk budget for lazy asset copies (CSDR_FEDERATION_LAZY_BUDGET_BYTES, csdr_federation.assets):
-- while the copies of lazy peers hold more bytes than the budget, the least recently used copy
-- goes back to reading its origin, one transaction each: its item's href is the origin's again
-- and its row `wanted` (its next use queues a copy again), `evicted_at` saying since when. Its
-- file stays CSDR_FEDERATION_LAZY_GRACE_S longer (a request that read the item just before may
-- still open it), then goes, unless the asset was queued again meanwhile.
ALTER TABLE csdr.federation_assets ADD COLUMN evicted_at timestamptz;
CREATE INDEX federation_assets_copied ON csdr.federation_assets (used_at) WHERE status = 'copied';
CREATE INDEX federation_assets_evicted ON csdr.federation_assets (evicted_at)
WHERE evicted_at IS NOT NULL;
CREATE INDEX federation_assets_path ON csdr.federation_assets (path);

-- A use of the asset read at `_source`: a `wanted` row (read at its origin's href) is queued, as
-- before; a copy (read at its local path) says it was used now: `used_at` is its last use.
CREATE OR REPLACE FUNCTION csdr.use_federation_asset(_source text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE csdr.federation_assets
    SET status = 'queued', due_at = now(), used_at = now(), evicted_at = NULL, updated_at = now()
    WHERE source = _source AND status = 'wanted';
    UPDATE csdr.federation_assets SET used_at = now()
    WHERE path = _source AND status = 'copied';
    RETURN csdr.federation_asset_key(_source);
END
$$;
