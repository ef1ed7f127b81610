-- Areas for the `source` usage measure (scenes in the catalogue over an organisation's area):
-- each country's boundary (loaded by infra/db/migrate.py from infra/db/areas/countries.geojson,
-- Natural Earth 1:110m, public domain) and an operator's own area for an organisation
-- (`csdr-admin org area`), which replaces its country's.
CREATE TABLE csdr.country_areas (
    country  char(2) PRIMARY KEY CHECK (country ~ '^[A-Z]{2}$'),
    name     text NOT NULL,
    geom     geometry(MultiPolygon, 4326) NOT NULL CHECK (ST_IsValid(geom))
);

-- What country_areas was loaded from: the file's SHA-256, so a changed file is loaded again.
CREATE TABLE csdr.country_areas_source (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    digest     text NOT NULL,
    loaded_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE csdr.organisation_areas (
    org_id      bigint PRIMARY KEY REFERENCES csdr.organisations (id) ON DELETE CASCADE,
    geom        geometry(MultiPolygon, 4326) NOT NULL CHECK (ST_IsValid(geom)),
    label       text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

