-- The STAC API of each peer as its feed names it (`catalog`): the tiler gives the key the peer
-- issued to this node to GDAL for reads under that URL only (scenes kept at their origin,
-- `--assets proxy`). Set by the sync worker with each checkpoint.
ALTER TABLE csdr.federation_peers ADD COLUMN catalog_url text CHECK (catalog_url ~ '^https?://');
