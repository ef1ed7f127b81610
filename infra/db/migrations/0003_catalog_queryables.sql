-- Queryables every collection shares, each with an index on every partition: the properties
-- partners search and sort by (satellite, sensor, cloud, resolution, angles, orbit, level).
-- Without an index pgSTAC sorts 100k items by eo:cloud_cover in ~600 ms (docs/
-- performance.md). Ingest writes these properties; the catalog rejects sorting on unknown ones.
-- Wrappers cast the JSON value so comparisons and sorts are numeric where the value is a number;
-- an array (instruments) is read through to_text_array and served by a GIN index (&&, @>).
SELECT pgstac.upsert_queryable(q.name, q.definition::jsonb, q.wrapper, q.index_type)
FROM (VALUES
    ('eo:cloud_cover', '{"title": "Cloud cover (%)", "type": "number", "minimum": 0, "maximum": 100}',
     'to_float', 'BTREE'),
    ('platform', '{"title": "Platform (satellite), e.g. gf-2", "type": "string"}', 'to_text', 'BTREE'),
    ('constellation', '{"title": "Constellation, e.g. gaofen", "type": "string"}', 'to_text', 'BTREE'),
    ('instruments', '{"title": "Instruments (sensors), e.g. pms", "type": "array", "items": {"type": "string"}}',
     'to_text_array', 'GIN'),
    ('gsd', '{"title": "Ground sample distance (m)", "type": "number", "exclusiveMinimum": 0}',
     'to_float', 'BTREE'),
    ('view:off_nadir', '{"title": "Off-nadir angle (degrees)", "type": "number", "minimum": 0, "maximum": 90}',
     'to_float', 'BTREE'),
    ('view:sun_elevation', '{"title": "Sun elevation (degrees)", "type": "number", "minimum": -90, "maximum": 90}',
     'to_float', 'BTREE'),
    ('sat:absolute_orbit', '{"title": "Absolute orbit number", "type": "integer", "minimum": 1}',
     'to_int', 'BTREE'),
    ('processing:level', '{"title": "Processing level, e.g. L1A", "type": "string"}', 'to_text', 'BTREE')
) AS q (name, definition, wrapper, index_type);
