-- Platform, constellation and instrument names from the shared vocabularies, for items and
-- collections already in the catalogue (the ingest writes them since issue 13:
-- services/ingest/src/csdr_ingest/cresda/collections.py PLATFORMS). `platform` is the CEOS/WMO
-- OSCAR satellite name in STAC's lower-case style (`cb04` -> `cbers-4`, `GF2`/`gf2` -> `gf-2`,
-- `zy-3` -> `zy-3-01`, `zy-1e` -> `zy-1-02d`), `constellation` the programme (`cb` -> `cbers`,
-- `hj-1` -> `huanjing`), `instruments` lower case. Collection ids do not change.
--
-- Items are rewritten in place (pgSTAC's `content`, routed to each partition by PostgreSQL), so
-- searches by the new names find them without a re-ingest; `updated` is set to the time of the
-- rewrite. Each rewritten item produces one `updated` item event (0004_push.sql) in this
-- transaction, which is how mirrors and subscribers learn the new names. Safe to run again: rows
-- already in the vocabulary are left alone.

-- Old spelling, compared without case and punctuation (`GF-2`, `gf2`, `GF2` -> `gf2`).
CREATE TEMPORARY TABLE csdr_platform_names (spelling text PRIMARY KEY, platform text NOT NULL)
ON COMMIT DROP;
INSERT INTO csdr_platform_names (spelling, platform) VALUES
    ('gf1', 'gf-1'), ('gf1b', 'gf-1b'), ('gf1c', 'gf-1c'), ('gf1d', 'gf-1d'), ('gf2', 'gf-2'),
    ('gf3', 'gf-3'), ('gf4', 'gf-4'), ('gf5', 'gf-5'), ('gf6', 'gf-6'), ('gf7', 'gf-7'),
    ('zy3', 'zy-3-01'), ('zy301', 'zy-3-01'), ('zy302', 'zy-3-02'), ('zy303', 'zy-3-03'),
    ('zy02c', 'zy-1-02c'), ('zy102c', 'zy-1-02c'), ('zy1e', 'zy-1-02d'), ('zy102d', 'zy-1-02d'),
    ('cb04', 'cbers-4'), ('cbers04', 'cbers-4'), ('cbers4', 'cbers-4'),
    ('cb04a', 'cbers-4a'), ('cbers04a', 'cbers-4a'), ('cbers4a', 'cbers-4a'),
    ('hj1a', 'hj-1a'), ('hj1b', 'hj-1b');

-- A constellation spelling, and the programme of each platform by its prefix.
CREATE TEMPORARY TABLE csdr_constellation_names (spelling text PRIMARY KEY, name text NOT NULL)
ON COMMIT DROP;
INSERT INTO csdr_constellation_names (spelling, name) VALUES
    ('gf', 'gaofen'), ('gaofen', 'gaofen'), ('zy', 'ziyuan'), ('ziyuan', 'ziyuan'),
    ('cb', 'cbers'), ('cbers', 'cbers'), ('hj', 'huanjing'), ('hj1', 'huanjing'),
    ('huanjing', 'huanjing');

CREATE OR REPLACE FUNCTION pg_temp.spelling(name text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT lower(regexp_replace(name, '[^A-Za-z0-9]', '', 'g')) $$;

CREATE OR REPLACE FUNCTION pg_temp.platform(name text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT platform FROM csdr_platform_names WHERE spelling = pg_temp.spelling(name)), name)
$$;

-- The programme of a (new) platform name, else of the constellation as written.
CREATE OR REPLACE FUNCTION pg_temp.constellation(platform text, constellation text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT name FROM csdr_constellation_names
         WHERE spelling = pg_temp.spelling(split_part(platform, '-', 1))
           AND platform IN (SELECT p.platform FROM csdr_platform_names p)),
        (SELECT name FROM csdr_constellation_names
         WHERE spelling = pg_temp.spelling(constellation)),
        constellation)
$$;

CREATE OR REPLACE FUNCTION pg_temp.lower_all(names jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_agg(lower(n) ORDER BY i), '[]'::jsonb)
    FROM jsonb_array_elements_text(names) WITH ORDINALITY AS e(n, i)
$$;

-- The properties of an item (or the summaries of a collection) with the names in the vocabulary.
CREATE OR REPLACE FUNCTION pg_temp.named(props jsonb, summaries boolean) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    platform text;
    out jsonb := props;
BEGIN
    IF summaries THEN
        IF jsonb_typeof(props->'platform') = 'array' THEN
            out := jsonb_set(out, '{platform}', (
                SELECT jsonb_agg(DISTINCT pg_temp.platform(p))
                FROM jsonb_array_elements_text(props->'platform') p));
        END IF;
        IF jsonb_typeof(props->'constellation') = 'array' THEN
            out := jsonb_set(out, '{constellation}', (
                SELECT jsonb_agg(DISTINCT pg_temp.constellation(
                    coalesce(out->'platform'->>0, ''), c))
                FROM jsonb_array_elements_text(props->'constellation') c));
        END IF;
    ELSE
        IF jsonb_typeof(props->'platform') = 'string' THEN
            platform := pg_temp.platform(props->>'platform');
            out := jsonb_set(out, '{platform}', to_jsonb(platform));
            IF props ? 'constellation'
               OR pg_temp.spelling(platform) IN (SELECT spelling FROM csdr_platform_names) THEN
                out := jsonb_set(out, '{constellation}',
                    to_jsonb(pg_temp.constellation(platform, props->>'constellation')));
            END IF;
        ELSIF jsonb_typeof(props->'constellation') = 'string' THEN
            out := jsonb_set(out, '{constellation}',
                to_jsonb(pg_temp.constellation('', props->>'constellation')));
        END IF;
    END IF;
    IF jsonb_typeof(props->'instruments') = 'array' THEN
        out := jsonb_set(out, '{instruments}', pg_temp.lower_all(props->'instruments'));
    END IF;
    RETURN out;
END
$$;

UPDATE pgstac.items
SET content = jsonb_set(
    content, '{properties}',
    pg_temp.named(content->'properties', false)
        || jsonb_build_object('updated', to_char(now() AT TIME ZONE 'UTC',
                                                 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')))
WHERE pg_temp.named(content->'properties', false) IS DISTINCT FROM content->'properties';

UPDATE pgstac.collections
SET content = jsonb_set(content, '{summaries}', pg_temp.named(content->'summaries', true))
WHERE jsonb_typeof(content->'summaries') = 'object'
  AND pg_temp.named(content->'summaries', true) IS DISTINCT FROM content->'summaries';
