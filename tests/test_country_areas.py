"""The country areas migrate loads from infra/db/areas/countries.geojson: every area a valid
MultiPolygon holding its capital, loaded again only when the file changes."""

import json

import psycopg

from infra.db.migrate import COUNTRIES, load_country_areas

CAPITALS = {"TH": (100.5, 13.75), "LA": (102.6, 17.97), "BD": (90.4, 23.8), "CN": (116.4, 39.9)}


def test_countries_loaded_and_reloaded_when_changed(pg_env, tmp_path):
    conninfo = ""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        count, invalid = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE NOT ST_IsValid(geom)"
            " OR GeometryType(geom) <> 'MULTIPOLYGON') FROM csdr.country_areas"
        ).fetchone()
        assert (count, invalid) == (len(json.loads(COUNTRIES.read_text())["features"]), 0)
        assert count > 170
        for country, (lon, lat) in CAPITALS.items():
            holders = conn.execute(
                "SELECT array_agg(country ORDER BY country) FROM csdr.country_areas"
                " WHERE ST_Intersects(geom, ST_SetSRID(ST_MakePoint(%s, %s), 4326))",
                (lon, lat),
            ).fetchone()[0]
            assert holders == [country]

    assert load_country_areas(conninfo) is False  # the same file: left as it is
    one = tmp_path / "countries.geojson"
    collection = json.loads(COUNTRIES.read_text())
    collection["features"] = [
        f for f in collection["features"] if f["properties"]["country"] == "LA"
    ]
    one.write_text(json.dumps(collection))
    assert load_country_areas(conninfo, one) is True
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows = conn.execute("SELECT country, name FROM csdr.country_areas").fetchall()
    assert rows == [("LA", "Laos")]
    assert load_country_areas(conninfo, one) is False
