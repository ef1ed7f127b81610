"""A subscription's area: `bbox` or `intersects`, turned into a PostGIS geometry by pgSTAC's
stac_geom(), the same function its searches use."""

from typing import Any

import asyncpg

from csdr_push.errors import InvalidSubscription


def check_bbox(bbox: list[float]) -> None:
    """Raise InvalidSubscription unless bbox is [w, s, e, n] (or 3D) in WGS84 with s <= n."""
    if len(bbox) not in (4, 6):
        raise InvalidSubscription("bbox must have 4 numbers (west, south, east, north) or 6")
    half = len(bbox) // 2
    west, south, east, north = bbox[0], bbox[1], bbox[half], bbox[half + 1]
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= north <= 90):
        raise InvalidSubscription(
            "bbox must be west, south, east, north in degrees with -90 <= south <= north <= 90"
        )
    if west > east:
        raise InvalidSubscription(
            "bbox crossing the antimeridian is not supported; use intersects with a MultiPolygon"
        )


async def to_geometry_wkb(conn: asyncpg.Connection, area: dict[str, Any]) -> bytes:
    """EWKB of the area's geometry; InvalidSubscription when PostGIS cannot read it or it is
    not valid."""
    try:
        row = await conn.fetchrow(
            "SELECT ST_AsEWKB(g) AS wkb, ST_IsValid(g) AS valid, ST_IsValidReason(g) AS reason"
            " FROM (SELECT ST_SetSRID(pgstac.stac_geom($1::jsonb), 4326) AS g) x",
            area,
        )
    except asyncpg.PostgresError as exc:
        raise InvalidSubscription(f"intersects is not a GeoJSON geometry: {exc}") from None
    assert row is not None
    if not row["valid"]:
        raise InvalidSubscription(f"intersects is not a valid geometry: {row['reason']}")
    return bytes(row["wkb"])
