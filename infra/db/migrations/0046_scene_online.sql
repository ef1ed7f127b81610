-- Which scenes are online, one rule for every service: a scene is online (its COGs are published:
-- the tiler draws it, a download or an order delivers it at once) when its item's `order:status`
-- (STAC order extension) is absent or `succeeded`; any other status (`orderable`: archived,
-- produced on order; `ordered`, `pending`, `shipping`, `failed`, `canceled`) is offline.
-- csdr_storage.availability holds the same rule for Python and as CQL2 (searches), the portal's
-- js/availability.js for the browser; tests/test_availability.py fails when one disagrees.
-- `content` is an item as pgSTAC stores it (pgstac.items.content) or hydrates it (get_item);
-- NULL (no such item) gives NULL, neither online nor offline.
-- A plain SQL expression, IMMUTABLE and not STRICT, so the planner inlines it into a query's
-- WHERE (no call per row).
CREATE FUNCTION csdr.scene_online(content jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN content IS NOT NULL
        THEN coalesce(content -> 'properties' ->> 'order:status', 'succeeded') = 'succeeded' END
$$;
