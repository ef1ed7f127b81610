"""Rebuild `countries.geojson` (one MultiPolygon per ISO 3166-1 alpha-2 code) from Natural Earth's
1:110m admin-0 countries as the `naturalearth_lowres` shapefile that geopandas 0.14.4 ships.

Usage: python -m infra.db.areas.build_countries DATASET_DIR [ISO_3166_1_JSON]
  DATASET_DIR: geopandas/datasets/naturalearth_lowres from the unpacked geopandas 0.14.4 wheel
  ISO_3166_1_JSON: Debian's iso-codes file (default /usr/share/iso-codes/json/iso_3166-1.json)
Not run by the node: the result is committed, and `infra/db/migrate.py` loads it.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import MultiPolygon, Polygon, mapping

HERE = Path(__file__).parent
# Natural Earth units without an ISO 3166-1 code of their own, under the code ISO 3166 counts them
# in (Kosovo: the user-assigned XK that the EU and the World Bank use).
MERGED = {"Somaliland": "SO", "N. Cyprus": "CY", "Kosovo": "XK"}
GRID_DEG = 0.001  # ~100 m: far below the 1:110m scale's own error (~1 km)


def read_dbf(path: Path) -> list[dict[str, str]]:
    """The records of a dBASE III table, every field as stripped text."""
    data = path.read_bytes()
    count, header_len, record_len = struct.unpack("<IHH", data[4:12])
    fields, pos = [], 32
    while data[pos] != 0x0D:
        name = data[pos : pos + 11].split(b"\0")[0].decode()
        fields.append((name, data[pos + 16]))
        pos += 32
    rows = []
    for n in range(count):
        record, at, row = data[header_len + n * record_len :], 1, {}
        for name, width in fields:
            row[name] = record[at : at + width].decode("utf-8", "replace").strip()
            at += width
        rows.append(row)
    return rows


def read_polygons(path: Path) -> list[MultiPolygon]:
    """The polygon shapes of an ESRI shapefile: clockwise rings are shells, the others holes."""
    data, pos, shapes = path.read_bytes(), 100, []
    while pos < len(data):
        length = struct.unpack(">i", data[pos + 4 : pos + 8])[0] * 2
        body, pos = data[pos + 8 : pos + 8 + length], pos + 8 + length
        parts_n, points_n = struct.unpack("<ii", body[36:44])
        parts = [*struct.unpack(f"<{parts_n}i", body[44 : 44 + 4 * parts_n]), points_n]
        at = 44 + 4 * parts_n
        xy = struct.unpack(f"<{2 * points_n}d", body[at : at + 16 * points_n])
        rings = [
            [(xy[2 * i], xy[2 * i + 1]) for i in range(parts[k], parts[k + 1])]
            for k in range(parts_n)
        ]
        shells = [Polygon(r) for r in rings if shapely.LinearRing(r).is_ccw is False]
        holes = [Polygon(r) for r in rings if shapely.LinearRing(r).is_ccw]
        polygons = [
            Polygon(s.exterior, [h.exterior for h in holes if s.contains(h.representative_point())])
            for s in shells
        ]
        shapes.append(MultiPolygon(polygons))
    return shapes


def build(dataset: Path, iso_json: Path) -> dict[str, Any]:
    """The FeatureCollection: properties `country` (alpha-2) and `name` (ISO 3166-1's)."""
    iso = {c["alpha_3"]: c for c in json.loads(iso_json.read_text())["3166-1"]}
    by_alpha2 = {c["alpha_2"]: c for c in iso.values()}
    names = {"XK": "Kosovo"}
    areas: dict[str, list[Any]] = {}
    rows = read_dbf(dataset / "naturalearth_lowres.dbf")
    for row, shape in zip(rows, read_polygons(dataset / "naturalearth_lowres.shp"), strict=True):
        code = MERGED.get(row["name"]) or iso.get(row["iso_a3"], {}).get("alpha_2")
        if code is None:
            sys.exit(f"no ISO 3166-1 code for {row['name']!r} ({row['iso_a3']})")
        areas.setdefault(code, []).append(shape)
    features = []
    for code in sorted(areas):
        merged = shapely.set_precision(shapely.union_all(areas[code]), GRID_DEG)
        if merged.geom_type == "Polygon":
            merged = MultiPolygon([merged])
        assert merged.is_valid and merged.geom_type == "MultiPolygon", code
        name = names.get(code) or by_alpha2[code].get("common_name") or by_alpha2[code]["name"]
        features.append(
            {
                "type": "Feature",
                "properties": {"country": code, "name": name},
                "geometry": mapping(merged),
            }
        )
    return {"type": "FeatureCollection", "features": features}


def main(argv: list[str]) -> None:
    """Write countries.geojson beside this script."""
    iso = Path(argv[1] if len(argv) > 1 else "/usr/share/iso-codes/json/iso_3166-1.json")
    collection = build(Path(argv[0]), iso)
    text = json.dumps(collection, separators=(",", ":"), ensure_ascii=False)
    # Coordinates on the grid print as their shortest decimals (set_precision keeps binary noise).
    text = json.dumps(
        json.loads(text, parse_float=lambda s: round(float(s), 3)),
        separators=(",", ":"),
        ensure_ascii=False,
    )
    (HERE / "countries.geojson").write_text(text + "\n")
    print(f"{len(collection['features'])} countries, {len(text):,} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
