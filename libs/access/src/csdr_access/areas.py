"""`csdr-admin org area`: the area an organisation's usage statistics count the catalogue's scenes
over (the `source` measure). By default its country's (csdr.country_areas, Natural Earth 1:110m);
an operator may give it its own from a GeoJSON file (a partner whose agreement covers a region),
which replaces the country's, or take that back (`--country`). Changes go to the audit log."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from csdr_access.admin import AdminError, _org_id, audit

POLYGONAL = frozenset({"Polygon", "MultiPolygon"})


def polygons_of(document: Any) -> list[dict[str, Any]]:
    """The Polygon and MultiPolygon geometries of a GeoJSON geometry, Feature or
    FeatureCollection; anything else is refused, saying where."""
    if not isinstance(document, dict):
        raise AdminError("the area must be a GeoJSON object")
    kind = document.get("type")
    if kind == "FeatureCollection":
        features = document.get("features")
        if not isinstance(features, list) or not features:
            raise AdminError("the FeatureCollection has no features")
        found = []
        for n, feature in enumerate(features):
            try:
                found += polygons_of(feature)
            except AdminError as exc:
                raise AdminError(f"features[{n}]: {exc}") from None
        return found
    if kind == "Feature":
        return polygons_of(document.get("geometry"))
    if kind in POLYGONAL:
        return [document]
    raise AdminError(f"an area is a Polygon or MultiPolygon, not {kind!r}")


def set_area(
    conn: psycopg.Connection, org: str, document: Any, actor: str, label: str | None = None
) -> dict[str, Any]:
    """Give an organisation its own area (the union of the document's polygons, WGS 84)."""
    geometries = [json.dumps(g) for g in polygons_of(document)]
    org_id = _org_id(conn, org)
    with conn.transaction():
        try:
            row = conn.execute(
                "SELECT ST_Multi(ST_Union(ST_SetSRID(ST_GeomFromGeoJSON(g), 4326)))"
                " FROM unnest(%s::text[]) g",
                (geometries,),
            ).fetchone()
        except (psycopg.errors.DataException, psycopg.errors.InternalError_) as exc:
            said = exc.diag.message_primary
            raise AdminError(f"not a readable GeoJSON geometry: {said}") from None
        assert row is not None
        check = conn.execute(
            "SELECT ST_IsValidReason(%(g)s), ST_XMin(%(g)s), ST_YMin(%(g)s), ST_XMax(%(g)s),"
            " ST_YMax(%(g)s)",
            {"g": row[0]},
        ).fetchone()
        assert check is not None
        reason, *bounds = check
        if reason != "Valid Geometry":
            raise AdminError(f"the area is not a valid geometry: {reason}")
        west, south, east, north = bounds
        if west < -180 or east > 180 or south < -90 or north > 90:
            raise AdminError(
                f"the area's bounds {west}, {south}, {east}, {north} are not longitude and"
                " latitude in degrees (GeoJSON is WGS 84)"
            )
        conn.execute(
            "INSERT INTO csdr.organisation_areas (org_id, geom, label) VALUES (%s, %s, %s)"
            " ON CONFLICT (org_id) DO UPDATE SET geom = excluded.geom, label = excluded.label,"
            " updated_at = now()",
            (org_id, row[0], label),
        )
        bbox = [west, south, east, north]
        audit(conn, actor, "org.area", {"org": org, "label": label, "bbox": bbox})
    return show_area(conn, org)


def clear_area(conn: psycopg.Connection, org: str, actor: str) -> dict[str, Any]:
    """Take an organisation's own area back: its country's applies again."""
    org_id = _org_id(conn, org)
    with conn.transaction():
        conn.execute("DELETE FROM csdr.organisation_areas WHERE org_id = %s", (org_id,))
        audit(conn, actor, "org.area", {"org": org, "area": "country"})
    return show_area(conn, org)


def show_area(conn: psycopg.Connection, org: str) -> dict[str, Any]:
    """Which area applies to an organisation (`own`, `country` or `none`), its label, bounds
    and size."""
    org_id = _org_id(conn, org)
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT o.name AS org, o.country,"
            " CASE WHEN a.org_id IS NOT NULL THEN 'own' WHEN c.country IS NOT NULL"
            "  THEN 'country' ELSE 'none' END AS area,"
            " coalesce(a.label, c.name) AS label,"
            " round((ST_Area(g.geom::geography) / 1e6)::numeric) AS km2,"
            " concat_ws(',', round(ST_XMin(g.geom)::numeric, 3),"
            "  round(ST_YMin(g.geom)::numeric, 3), round(ST_XMax(g.geom)::numeric, 3),"
            "  round(ST_YMax(g.geom)::numeric, 3)) AS bbox"
            " FROM csdr.organisations o"
            " LEFT JOIN csdr.organisation_areas a ON a.org_id = o.id"
            " LEFT JOIN csdr.country_areas c ON c.country = o.country"
            " CROSS JOIN LATERAL (SELECT coalesce(a.geom, c.geom) AS geom) g WHERE o.id = %s",
            (org_id,),
        ).fetchone()
    assert row is not None
    return {**row, "bbox": row["bbox"] or None}


def add_parsers(org: Any) -> None:
    """The `org area` command of csdr-admin (under the `org` group's subparsers)."""
    area = org.add_parser(
        "area", help="the area usage statistics count catalogue scenes over (`source`)"
    )
    area.add_argument("org")
    which = area.add_mutually_exclusive_group()
    which.add_argument("file", nargs="?", type=Path, help="a GeoJSON file: the organisation's own")
    which.add_argument("--country", action="store_true", help="back to its country's area")
    area.add_argument("--label", help="what the own area is (e.g. the agreement's name)")


def run(args: argparse.Namespace, conn: psycopg.Connection, actor: str) -> dict[str, Any]:
    """Carry out `org area`; the area that applies afterwards."""
    if args.country:
        return clear_area(conn, args.org, actor)
    if args.file is None:
        return show_area(conn, args.org)
    try:
        document = json.loads(args.file.read_text())
    except (OSError, ValueError) as exc:
        raise AdminError(f"{args.file}: cannot read GeoJSON: {exc}") from None
    return set_area(conn, args.org, document, actor, args.label)
