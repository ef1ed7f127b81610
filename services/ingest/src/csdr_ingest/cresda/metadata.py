"""Product metadata of CRESDA deliveries, read into one shape whatever the XML schema.

Three schemas are read: `ProductMetaData` (flat, GF-1/2/6 from CRESDA), `<root><data>`
(lower-camel tags, HJ-1 and CBERS-04) and LASAC's `sensor_corrected_metadata` (nested
`productInfo/...`, ZY-3 and GF-7). Each schema has its own time zone (TIME_ZONES) and sun-azimuth
convention (`_lower_camel`); cresda/sun.py checks both against the computed sun at ingest.
Facts checked against real files (tests/fixtures/cresda/README.md, .../records/README.md):
`ReceiveTime` is UTC while `StartTime`/`EndTime`/`CenterTime` are Beijing time without a zone
marker; `<root><data>` times are UTC; `SolarZenith` is a zenith angle but `SatelliteZenith`
behaves as an elevation; `CloudPercent` above 100 is unknown.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from csdr_ingest.errors import PackageInvalid

# ProductMetaData and LASAC stamp acquisition times in Beijing time (UTC+8) without saying so;
# `<root><data>` records stamp them in UTC. The sun at the scene decides (cresda/sun.py): the real
# GF-1/GF-2 files fit Beijing time to 0.03 deg of sun elevation, the real CBERS-04 MUX record fits
# UTC to 4 deg and misses by 110 deg when read as Beijing time.
BEIJING = timezone(timedelta(hours=8), "UTC+8")
FLAT, LOWER_CAMEL, LASAC = "ProductMetaData", "root/data", "sensor_corrected_metadata"
TIME_ZONES = {FLAT: BEIJING, LOWER_CAMEL: UTC, LASAC: BEIJING}
PRODUCT_ROOTS = {"ProductMetaData", "root", "sensor_corrected_metadata"}
# Camera views of stereo satellites (GF-7, ZY-3), as prefixes of a part's camera: `BWDMUX`.
CAMERA_VIEWS = "BWD|FWD|NAD"


def sensor_family(sensor: str) -> str:
    """`WFV3` -> `WFV`, `PMS2` -> `PMS`, `CCD1` -> `CCD`; CBERS-04's `PAN5M`/`PAN10M` (the
    5 m and 10 m products of one camera) -> `PAN`."""
    return re.sub(r"\d+M?$", "", sensor.upper()) or sensor.upper()


@dataclass(frozen=True)
class Corners:
    """Image corners (lon, lat) as the XML gives them, clockwise from top-left."""

    top_left: tuple[float, float]
    top_right: tuple[float, float]
    bottom_right: tuple[float, float]
    bottom_left: tuple[float, float]

    def ring(self) -> list[tuple[float, float]]:
        """The corners as a closed GeoJSON ring."""
        pts = [self.top_left, self.top_right, self.bottom_right, self.bottom_left]
        return [*pts, pts[0]]


@dataclass(frozen=True)
class ProductMetadata:
    """What one product XML says about its scene, in SI-ish units and UTC."""

    source: Path
    schema: str
    satellite: str
    sensor: str
    product_id: str
    scene_id: str | None
    level: str
    start: datetime
    end: datetime
    center: datetime
    gsd: float
    width: int | None
    height: int | None
    bands: tuple[int, ...]
    cloud_cover: float | None
    orbit: int | None
    path: int | None
    row: int | None
    sun_elevation: float | None
    sun_azimuth: float | None
    """Degrees clockwise from north, from the scene to the sun (STAC's view:sun_azimuth)."""
    incidence_angle: float | None
    off_nadir: float | None
    corners: Corners | None

    @property
    def time_zone(self) -> str:
        """The zone this schema's times were read in, as an operator would name it."""
        return "Beijing time (UTC+8)" if TIME_ZONES[self.schema] is BEIJING else "UTC"


def is_product_metadata(path: Path) -> bool:
    """True for an XML whose root is a known product schema (not `order.xml`, `*.aux.xml`)."""
    if path.suffix.lower() != ".xml" or path.name.lower().endswith(".aux.xml"):
        return False
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError):
        return False
    return root.tag in PRODUCT_ROOTS and (root.tag != "root" or _child(root, "data") is not None)


def parse_metadata(path: Path) -> ProductMetadata:
    """Read a product XML of any known schema, or say what is wrong with it."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise PackageInvalid(f"{path.name}: not a readable XML file ({exc})") from exc
    try:
        if root.tag == "ProductMetaData":
            return _flat(path, root)
        if root.tag == "root":
            return _lower_camel(path, root)
        if root.tag == "sensor_corrected_metadata":
            return _lasac(path, root)
    except (KeyError, ValueError) as exc:
        raise PackageInvalid(f"{path.name}: {exc}") from exc
    raise PackageInvalid(f"{path.name}: root <{root.tag}> is not a CRESDA product metadata schema")


TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%d %H:%M:%S",
    "%Y:%m:%d %H:%M:%S",
    # LASAC's compact form (TimeStamp/CenterTime, e.g. 20160930111133.250).
    "%Y%m%d%H%M%S.%f",
    "%Y%m%d%H%M%S",
)


def to_utc(text: str, schema: str) -> datetime:
    """A time stamp without zone ('YYYY-MM-DD HH:MM:SS[.fff]' or 'YYYYMMDDHHMMSS[.fff]') in the
    zone of `schema` (TIME_ZONES), as an aware UTC datetime."""
    value = text.strip().replace("T", " ")
    for fmt in TIME_FORMATS:
        try:
            local = datetime.strptime(value, fmt).replace(tzinfo=TIME_ZONES[schema])
            return local.astimezone(UTC)
        except ValueError:
            continue
    raise ValueError(f"time {text!r} is not 'YYYY-MM-DD HH:MM:SS' nor 'YYYYMMDDHHMMSS'")


def cloud_cover(value: float | None) -> float | None:
    """CloudPercent as eo:cloud_cover; values above 100 (seen: 101) mean unknown."""
    if value is None or not 0 <= value <= 100:
        return None
    return value


def _child(elem: ET.Element, name: str) -> ET.Element | None:
    """A direct child by tag, case-insensitively (LASAC files vary the case)."""
    lname = name.lower()
    return next((c for c in elem if c.tag.lower() == lname), None)


def _find(elem: ET.Element, *path: str) -> str | None:
    """Text at a path of child tags (case-insensitive), None when absent or empty."""
    node: ET.Element | None = elem
    for name in path:
        node = _child(node, name) if node is not None else None
    text = node.text.strip() if node is not None and node.text else ""
    return text or None


def _req(elem: ET.Element, *path: str) -> str:
    value = _find(elem, *path)
    if value is None:
        raise KeyError(f"required tag <{'/'.join(path)}> is missing or empty")
    return value


def _float(value: str | None) -> float | None:
    return float(value) if value is not None else None


def _int(value: str | None) -> int | None:
    return int(float(value)) if value is not None else None


def _bands(value: str | None) -> tuple[int, ...]:
    return tuple(int(b) for b in value.replace(" ", "").split(",") if b) if value else ()


def _level(value: str) -> str:
    """'LEVEL1A' -> 'L1A', 'LEVEL2' -> 'L2'."""
    value = value.strip().upper()
    return "L" + value.removeprefix("LEVEL") if value.startswith("LEVEL") else value


def _corners(
    elem: ET.Element, keys: tuple[str, str, str, str], lon: str, lat: str
) -> Corners | None:
    points = []
    for key in keys:
        x, y = _float(_find(elem, f"{key}{lon}")), _float(_find(elem, f"{key}{lat}"))
        if x is None or y is None:
            return None
        points.append((x, y))
    return Corners(*points)


def _flat(path: Path, e: ET.Element) -> ProductMetadata:
    """`ProductMetaData`: GF-1/GF-2/GF-6 L1A from CRESDA."""
    roll = _float(_find(e, "RollSatelliteAngle"))
    pitch = _float(_find(e, "PitchSatelliteAngle"))
    sat_zenith = _float(_find(e, "SatelliteZenith"))
    solar_zenith = _float(_find(e, "SolarZenith"))
    return ProductMetadata(
        source=path,
        schema=FLAT,
        satellite=_req(e, "SatelliteID"),
        sensor=_req(e, "SensorID"),
        product_id=_req(e, "ProductID"),
        scene_id=_find(e, "SceneID"),
        level=_level(_req(e, "ProductLevel")),
        start=to_utc(_req(e, "StartTime"), FLAT),
        end=to_utc(_req(e, "EndTime"), FLAT),
        center=to_utc(_req(e, "CenterTime"), FLAT),
        gsd=float(_req(e, "ImageGSD")),
        width=_int(_find(e, "WidthInPixels")),
        height=_int(_find(e, "HeightInPixels")),
        bands=_bands(_find(e, "Bands")),
        cloud_cover=cloud_cover(_float(_find(e, "CloudPercent"))),
        orbit=_int(_find(e, "OrbitID")),
        path=_int(_find(e, "ScenePath")),
        row=_int(_find(e, "SceneRow")),
        sun_elevation=None if solar_zenith is None else 90 - solar_zenith,
        sun_azimuth=_float(_find(e, "SolarAzimuth")),
        # SatelliteZenith reads ~89 at nadir in these files: an elevation, not a zenith angle.
        incidence_angle=None if sat_zenith is None else 90 - sat_zenith,
        off_nadir=None if roll is None or pitch is None else math.hypot(roll, pitch),
        corners=_corners(
            e, ("TopLeft", "TopRight", "BottomRight", "BottomLeft"), "Longitude", "Latitude"
        ),
    )


def _lower_camel(path: Path, root: ET.Element) -> ProductMetadata:
    """`<root><data>`: HJ-1A/B CCD and CBERS-04 from CRESDA (map-projected LEVEL2).

    Times are UTC. `sunAzimuthElevation` is the sun azimuth plus 180 degrees (as seen from the
    sun, or counted from south): the real CBERS-04 MUX record says 267.5 where the sun stood at
    85.2 deg from north; it is turned into STAC's convention here."""
    e = _child(root, "data")
    if e is None:
        raise KeyError("<root> has no <data> element")
    start = to_utc(_req(e, "imagingStartTime"), LOWER_CAMEL)
    end = to_utc(_req(e, "imagingStopTime"), LOWER_CAMEL)
    center = start + (end - start) / 2
    azimuth = _float(_find(e, "sunAzimuthElevation"))
    return ProductMetadata(
        source=path,
        schema=LOWER_CAMEL,
        satellite=_req(e, "satelliteId").replace("-", ""),
        sensor=_req(e, "sensorId").replace("-", ""),
        product_id=_req(e, "productId"),
        scene_id=_find(e, "sceneId"),
        level=_level(_req(e, "productLevel")),
        start=start,
        end=end,
        center=center,
        gsd=float(_req(e, "pixelSpacing")),
        width=None,
        height=None,
        bands=_bands(_find(e, "bands")),
        cloud_cover=cloud_cover(_float(_find(e, "cloudCoverage"))),
        orbit=_int(_find(e, "orbitId")),
        path=_int(_find(e, "scenePath")),
        row=_int(_find(e, "sceneRow")),
        sun_elevation=_float(_find(e, "sunElevation")),
        sun_azimuth=None if azimuth is None else (azimuth + 180) % 360,
        incidence_angle=None,
        off_nadir=_float(_find(e, "satOffNadir")),
        corners=_corners(
            e,
            ("dataUpperLeft", "dataUpperRight", "dataLowerRight", "dataLowerLeft"),
            "Long",
            "Lat",
        ),
    )


def _descendant(elem: ET.Element, name: str) -> str | None:
    """Text of the first descendant with this tag (case-insensitive), None when absent/empty."""
    lname = name.lower()
    node = next((n for n in elem.iter() if n.tag.lower() == lname), None)
    text = node.text.strip() if node is not None and node.text else ""
    return text or None


def _lasac_gsd(info: ET.Element) -> float:
    """`ImageGSD` is a number, or nested `Line`/`Sample` spacings: their mean."""
    node = _child(info, "ImageGSD")
    if node is None:
        raise KeyError("required tag <productInfo/ImageGSD> is missing")
    if len(node):
        spacings = [_float(_find(node, n)) for n in ("Line", "Sample")]
        values = [v for v in spacings if v is not None]
        if not values:
            raise KeyError("<ImageGSD> has neither <Line> nor <Sample>")
        return sum(values) / len(values)
    return float(_req(info, "ImageGSD"))


def _lasac_corners(info: ET.Element) -> Corners | None:
    """`ProductGeographicRange/{LeftTop,RightTop,RightBottom,LeftBottom}Point`, whose longitude
    tag is spelled `Longtitude` in LASAC files (`Longitude` accepted too)."""
    rng = _child(info, "ProductGeographicRange")
    if rng is None:
        return None
    points = []
    for key in ("LeftTopPoint", "RightTopPoint", "RightBottomPoint", "LeftBottomPoint"):
        lon = _find(rng, key, "Longtitude") or _find(rng, key, "Longitude")
        lat = _find(rng, key, "Latitude")
        if lon is None or lat is None:
            return None
        points.append((float(lon), float(lat)))
    return Corners(*points)


def _lasac(path: Path, root: ET.Element) -> ProductMetadata:
    """`sensor_corrected_metadata`: LASAC (Land Satellite Remote Sensing Application Center)
    ZY-3 and GF-7 sensor-corrected products; tags nested under `productInfo` (or `ProductInfo`:
    the case varies between deliveries).

    Times (`TimeStamp/StartTime|CenterTime|EndTime`) are read as Beijing time, like CRESDA's
    (no real LASAC file was at hand to hold against the sun; the ingest's sun check refuses a
    delivery that contradicts this reading):
    ZY-3 geometric processing converts the line times of its auxiliary data to UTC by
    subtracting 28800 s (Alchemilla/StarMapIdentification, GeometryProcess/GeoTime_ZY3.cpp),
    and ZY-3 crosses the equator descending at 10:30 local solar time, which LASAC product
    names of Chinese scenes (`ZY3_01a_..._20120310_104056_...`) fit only in UTC+8."""
    info = _child(root, "productInfo")
    if info is None:
        raise KeyError("<sensor_corrected_metadata> has no <productInfo> element")
    stamp = _child(info, "TimeStamp")
    if stamp is None:
        raise KeyError("required tag <productInfo/TimeStamp> is missing")
    center = to_utc(_req(stamp, "CenterTime"), LASAC)
    start_text, end_text = _find(stamp, "StartTime"), _find(stamp, "EndTime")
    roll = _float(_find(info, "RollViewingAngle"))
    pitch = _float(_find(info, "PitchViewingAngle"))
    product_id = _descendant(info, "ProductID") or _find(root, "processInfo", "ProduceID")
    if product_id is None:
        raise KeyError("required tag <productInfo/ProductID> (or processInfo/ProduceID) is missing")
    return ProductMetadata(
        source=path,
        schema=LASAC,
        satellite=_req(info, "SatelliteID").replace("-", ""),
        sensor=_req(info, "SensorID").replace("-", ""),
        product_id=product_id,
        scene_id=_find(info, "SceneID"),
        level=_level(_req(info, "ProductLevel")),
        start=to_utc(start_text, LASAC) if start_text else center,
        end=to_utc(end_text, LASAC) if end_text else center,
        center=center,
        gsd=_lasac_gsd(info),
        width=None,
        height=None,
        bands=_bands(_find(info, "Bands")),
        cloud_cover=cloud_cover(_float(_find(info, "CloudPercent"))),
        orbit=_int(_find(info, "OrbitID")),
        path=_int(_find(info, "ScenePath")),
        row=_int(_find(info, "SceneRow")),
        # SunAltitude is the sun's elevation above the horizon (degrees).
        sun_elevation=_float(_find(info, "SunAltitude")),
        sun_azimuth=_float(_find(info, "SunAzimuth")),
        incidence_angle=None,
        off_nadir=None if roll is None or pitch is None else math.hypot(roll, pitch),
        corners=_lasac_corners(info),
    )
