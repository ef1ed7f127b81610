-- Footprints by the right-hand rule (RFC 7946, CEOS STAC best practice REQ-6235): exterior rings
-- counter-clockwise, holes clockwise. The ingest writes them so (csdr_ingest.footprint.as_geojson);
-- this rewinds items stored before it did, in place. Each rewound item produces one `updated`
-- item event (0004_push.sql), which is how mirrors learn the new winding. Safe to run again.
UPDATE pgstac.items
SET geometry = ST_ForcePolygonCCW(geometry)
WHERE GeometryType(geometry) IN ('POLYGON', 'MULTIPOLYGON')
  AND NOT ST_IsPolygonCCW(geometry);
