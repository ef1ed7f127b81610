-- Lazy asset copies (peers registered with `--assets lazy`): a mirrored asset's row waits as
-- `wanted` (the copier does not claim it) and the item reads the origin, until the asset's first
-- use on this node (a tile read by the tiler, a download through the catalog: the rule is
-- csdr_storage.lazy) calls csdr.use_federation_asset, which queues the copy. Later uses find the
-- row past `wanted` and change nothing: however many uses, one copy.
ALTER TABLE csdr.federation_assets DROP CONSTRAINT federation_assets_status_check;
ALTER TABLE csdr.federation_assets ADD CONSTRAINT federation_assets_status_check
    CHECK (status IN ('wanted', 'queued', 'running', 'copied', 'failed'));
ALTER TABLE csdr.federation_assets ADD COLUMN used_at timestamptz;

-- A use names the asset by the href the item reads, the origin's download URL (`source`).
CREATE INDEX federation_assets_source ON csdr.federation_assets (source);

-- The key the peer of the asset read at `_source` issued to this node, while the asset is read at
-- its origin (a download passed through); NULL when `_source` is no mirrored asset's or its copy is
-- done.
CREATE FUNCTION csdr.federation_asset_key(_source text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT p.api_key FROM csdr.federation_assets a
    JOIN csdr.federation_peers p ON p.name = a.peer
    WHERE a.source = _source AND a.status <> 'copied'
    LIMIT 1
$$;

-- Record a use of the asset read at `_source`: a `wanted` row becomes `queued` (due now) and says
-- when it was first used; any other row is left as it is. Returns csdr.federation_asset_key.
CREATE FUNCTION csdr.use_federation_asset(_source text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE csdr.federation_assets
    SET status = 'queued', due_at = now(), used_at = now(), updated_at = now()
    WHERE source = _source AND status = 'wanted';
    RETURN csdr.federation_asset_key(_source);
END
$$;
