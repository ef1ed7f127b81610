"""Look-alike packages of the layouts no real sample of ships with the node: GF-6 WFV split into
segments, HJ-1 CCD and CBERS-04 MUX with one TIFF per band (or one multiband TIFF), GF-7 DLC
(`-BWDMUX`/`-BWDPAN`/`-FWDPAN` parts), LASAC ZY-3 products.

They follow tests/fixtures/cresda/README.md and the public code that reads them, and are
built on the real fixtures where they can be: a GF-6 WFV segment's RPCs are the real GF-1 WFV3
RPB (the same camera design) moved across track, the segments side by side with 10% overlap; a
LASAC `_rpc.txt` is the real GF-1 PAN1 RPB (a 2 m pushbroom camera like ZY-3's nadir one) in
GDAL's RPC text format. XML values that the fixtures do not give (ids, angles, times) are
invented but consistent: times in the zone each schema uses (Beijing time in ProductMetaData and
LASAC files, UTC in `<root><data>`), at the local solar time of a 10:30 descending
sun-synchronous orbit, with sun angles within a few degrees of the computed sun (cresda/sun.py)
in each schema's azimuth convention. Rasters are small (`max_size`).
"""

from __future__ import annotations

import math
import re
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.crs import CRS
from rasterio.features import geometry_mask
from rasterio.io import MemoryFile
from rasterio.rpc import RPC
from rasterio.transform import RPCTransformer
from rasterio.warp import transform as warp_transform

from csdr_ingest.cresda.rpctext import format_rpc_txt
from tests.fixtures import CRESDA
from tests.support.lookalike import scale_rpb, texture, write_lookalike, write_tiff

RPC_TXT_PIXEL_KEYS = ("LINE_OFF", "SAMP_OFF", "LINE_SCALE", "SAMP_SCALE")
WFV_FIXTURE = "GF1_WFV3_E89.0_N23.9_20200523_L1A0004819525"
PAN_FIXTURE = "GF1_PMS1_E69.4_N33.3_20220624_L1A0006547030"
RPB_SCALARS = {
    "lineOffset": "line_off",
    "sampOffset": "samp_off",
    "latOffset": "lat_off",
    "longOffset": "long_off",
    "heightOffset": "height_off",
    "lineScale": "line_scale",
    "sampScale": "samp_scale",
    "latScale": "lat_scale",
    "longScale": "long_scale",
    "heightScale": "height_scale",
}
RPB_LISTS = {
    "lineNumCoef": "line_num_coeff",
    "lineDenCoef": "line_den_coeff",
    "sampNumCoef": "samp_num_coeff",
    "sampDenCoef": "samp_den_coeff",
}


def rpc_from_rpb(text: str) -> RPC:
    """The RPC model of an RPB file's text."""
    values: dict[str, object] = {}
    for key, name in RPB_SCALARS.items():
        match = re.search(rf"\b{key}\s*=\s*([-+0-9.Ee]+);", text)
        if match is None:
            raise ValueError(f"RPB has no {key}")
        values[name] = float(match.group(1))
    for key, name in RPB_LISTS.items():
        match = re.search(rf"\b{key}\s*=\s*\(([^)]*)\)", text)
        if match is None:
            raise ValueError(f"RPB has no {key}")
        values[name] = [float(v) for v in match.group(1).replace(",", " ").split()]
    return RPC(**values)


def shift_rpb(text: str, dlon: float, dlat: float) -> str:
    """An RPB's text with its ground offsets moved by (dlon, dlat) degrees."""
    for key, delta in (("longOffset", dlon), ("latOffset", dlat)):
        match = re.search(rf"(\b{key}\s*=\s*)([-+0-9.Ee]+);", text)
        if match is None:
            raise ValueError(f"RPB has no {key}")
        moved = f"{match.group(1)}{float(match.group(2)) + delta!r};"
        text = text[: match.start()] + moved + text[match.end() :]
    return text


def image_corners(rpc: RPC, width: int, height: int) -> list[tuple[float, float]]:
    """(lon, lat) of an image's outer corners at HEIGHT_OFF: TL, TR, BR, BL."""
    rows, cols = [0, 0, height, height], [0, width, width, 0]
    with RPCTransformer(rpc, RPC_HEIGHT=rpc.height_off) as t:
        lons, lats = t.xy(rows, cols, offset="ul")
    return [(round(float(x), 6), round(float(y), 6)) for x, y in zip(lons, lats, strict=True)]


def set_tags(text: str, values: dict[str, object]) -> str:
    """An XML text with the given leaf tags' values replaced (`<Tag />` filled in too)."""
    for tag, value in values.items():
        new = f"<{tag}>{value}</{tag}>"
        text, n = re.subn(rf"<{tag}>[^<]*</{tag}>|<{tag}\s*/>", new, text, count=1)
        if n == 0:
            raise ValueError(f"template has no <{tag}>")
    return text


def pack(folder: Path, archive: str | None) -> Path:
    """The folder itself, or a `.tar.gz` of it (the folder removed) as packages are delivered."""
    if archive is None:
        return folder
    target = folder.with_name(f"{folder.name}.tar.gz")
    with tarfile.open(target, "w:gz", compresslevel=1) as tf:
        tf.add(folder, arcname=folder.name)
    shutil.rmtree(folder)
    return target


def write_jpeg(path: Path, width: int, height: int, seed: int) -> None:
    """A small 3-band JPEG (a browse image or thumbnail stand-in)."""
    rows = np.arange(height, dtype="float64")[:, np.newaxis]
    cols = np.arange(width, dtype="float64")[np.newaxis, :]
    data = np.stack([texture(seed + b, rows, cols) % 251 for b in range(3)]).astype("uint8")
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 3, "dtype": "uint8"}
    with MemoryFile() as mem, mem.open(**profile) as tmp:
        tmp.write(data)
        rasterio.shutil.copy(tmp, path, driver="JPEG")


# --- GF-6 WFV: one XML, `-1/-2/-3.tiff` segments each with its `.rpb` ---------------------------

GF6_WFV_NAME = "GF6_WFV_E89.0_N23.9_20210418_L1A1120054321"
GF6_SEGMENTS = 3
GF6_BANDS = 8


def segment_first_band(segment: int) -> int:
    """The texture band of a GF-6 look-alike segment's band 1 (segments differ in pixels)."""
    return 1 + 10 * (segment - 1)


def write_gf6_wfv_lookalike(
    out_dir: Path,
    max_size: int = 300,
    archive: str | None = "tar.gz",
    drop_rpb: int | None = None,
    fixtures: Path = CRESDA,
) -> Path:
    """A GF-6 WFV package: `<name>.xml`, `<name>-{1,2,3}.tiff` (8 bands) and `.rpb`s; segment
    `drop_rpb`'s RPB left out. The XML's pixel counts describe the whole image (segments side
    by side), its corners the outer corners of the first and last segments."""
    template = (fixtures / WFV_FIXTURE / f"{WFV_FIXTURE}.xml").read_text(encoding="utf-8")
    rpb_text = (fixtures / WFV_FIXTURE / f"{WFV_FIXTURE}.rpb").read_text()
    full_w, full_h = 12000, 13719
    factor = max(1, math.ceil(max(full_w, full_h) / max_size))
    width, height = math.ceil(full_w / factor), math.ceil(full_h / factor)
    tl, tr, _, _ = image_corners(rpc_from_rpb(rpb_text), full_w, full_h)
    # Across track (the image's top edge), 90% of a segment's width: 10% overlap.
    step = (0.9 * (tr[0] - tl[0]), 0.9 * (tr[1] - tl[1]))
    folder = out_dir / GF6_WFV_NAME
    folder.mkdir(parents=True, exist_ok=True)
    corners = []
    for k in range(1, GF6_SEGMENTS + 1):
        shift = k - (GF6_SEGMENTS + 1) / 2
        text = shift_rpb(rpb_text, shift * step[0], shift * step[1])
        corners.append(image_corners(rpc_from_rpb(text), full_w, full_h))
        stem = f"{GF6_WFV_NAME}-{k}"
        first = segment_first_band(k)
        write_tiff(folder / f"{stem}.tiff", width, height, GF6_BANDS, first_band=first)
        if k != drop_rpb:
            (folder / f"{stem}.rpb").write_text(scale_rpb(text, factor))
    (tl, _, _, bl), (_, tr, br, _) = corners[0], corners[-1]
    xml = set_tags(
        template,
        {
            "SatelliteID": "GF6",
            "SensorID": "WFV",
            "ReceiveTime": "2021-04-18 04:49:10",
            "OrbitID": 15582,
            "SceneID": 5871234,
            "ProductID": 1120054321,
            "ProduceTime": "2021-04-18 18:12:40",
            "Bands": ",".join(str(b) for b in range(1, GF6_BANDS + 1)),
            "StartTime": "2021-04-18 12:48:52",
            "EndTime": "2021-04-18 12:49:28",
            "CenterTime": "2021-04-18 12:49:10",
            "ImageGSD": repr(16.0 * factor),
            "WidthInPixels": GF6_SEGMENTS * width,
            "HeightInPixels": height,
            "CloudPercent": 12,
            "SolarZenith": 21.7,
            "SolarAzimuth": 123.4,
            "TopLeftLongitude": tl[0],
            "TopLeftLatitude": tl[1],
            "TopRightLongitude": tr[0],
            "TopRightLatitude": tr[1],
            "BottomRightLongitude": br[0],
            "BottomRightLatitude": br[1],
            "BottomLeftLongitude": bl[0],
            "BottomLeftLatitude": bl[1],
        },
    )
    (folder / f"{GF6_WFV_NAME}.xml").write_text(xml, encoding="utf-8")
    return pack(folder, archive)


# --- HJ-1A CCD: dash-style name, <root><data>, one map-projected TIFF per band ------------------

HJ_NAME = "HJ1A-CCD2-453-76-20121204-L20000902055"
HJ_CENTRE = (116.5, 39.6)  # lon, lat: the North China Plain
HJ_CRS = CRS.from_epsg(32650)
HJ_SWATH_M = 360_000.0
HJ_TILT_DEG = 12.0  # the swath's tilt from north in a descending pass at 40 N


def scale_rpc_txt(text: str, factor: int) -> str:
    """An RPC text file's text with its pixel offsets and scales divided by `factor`."""

    def divide(match: re.Match[str]) -> str:
        return f"{match.group(1)}{float(match.group(2)) / factor:+.12f}"

    pattern = rf"(?m)^(\s*(?:{'|'.join(RPC_TXT_PIXEL_KEYS)})\s*:\s*)([-+0-9.Ee]+)"
    return re.sub(pattern, divide, text)


@dataclass(frozen=True)
class ProjectedScene:
    """The grid of a map-projected look-alike and the corners of its swath (lon, lat)."""

    transform: Affine
    width: int
    height: int
    corners: list[tuple[float, float]]  # UL, UR, LR, LL
    pixel_spacing: float


def hj_scene(max_size: int) -> ProjectedScene:
    """A 360 km swath tilted by 12 degrees in UTM 50N, on a grid at most `max_size` across."""
    [cx], [cy] = warp_transform("EPSG:4326", HJ_CRS, [HJ_CENTRE[0]], [HJ_CENTRE[1]])
    half, angle = HJ_SWATH_M / 2, math.radians(HJ_TILT_DEG)
    cos, sin = math.cos(angle), math.sin(angle)
    local = [(-half, half), (half, half), (half, -half), (-half, -half)]
    xy = [(cx + cos * x - sin * y, cy + sin * x + cos * y) for x, y in local]
    xs, ys = [p[0] for p in xy], [p[1] for p in xy]
    extent = max(max(xs) - min(xs), max(ys) - min(ys))
    factor = max(1, math.ceil(extent / 30.0 / max_size))
    spacing = 30.0 * factor
    west, north = math.floor(min(xs) / spacing) * spacing, math.ceil(max(ys) / spacing) * spacing
    width = math.ceil((max(xs) - west) / spacing)
    height = math.ceil((north - min(ys)) / spacing)
    lons, lats = warp_transform(HJ_CRS, "EPSG:4326", xs, ys)
    corners = [(round(x, 6), round(y, 6)) for x, y in zip(lons, lats, strict=True)]
    transform = Affine(spacing, 0, west, 0, -spacing, north)
    return ProjectedScene(transform, width, height, corners, spacing)


def hj_band(scene: ProjectedScene, band: int) -> np.ndarray:
    """Band `band` (1-based) of the HJ look-alike: 8-bit texture inside the swath, 0 outside."""
    rows = np.arange(scene.height, dtype="float64")[:, np.newaxis]
    cols = np.arange(scene.width, dtype="float64")[np.newaxis, :]
    values = (1 + texture(band, rows, cols) % 254).astype("uint8")
    ring = [warp_transform("EPSG:4326", HJ_CRS, [x], [y]) for x, y in scene.corners]
    swath = {"type": "Polygon", "coordinates": [[(x[0], y[0]) for x, y in [*ring, ring[0]]]]}
    outside = geometry_mask([swath], (scene.height, scene.width), scene.transform)
    values[outside] = 0
    return values


def hj_xml(scene: ProjectedScene, overrides: dict[str, object] | None = None) -> str:
    """The `<root><data>` product XML of the HJ look-alike (`overrides` replace its fields)."""
    ul, ur, lr, ll = scene.corners
    fields: dict[str, object] = {
        "productId": "902055",
        "sceneId": "2317752",
        "satelliteId": "HJ-1A",
        "sensorId": "CCD2",
        "productLevel": "LEVEL2",
        "pixelSpacing": scene.pixel_spacing,
        "orbitId": 21063,
        "scenePath": 453,
        "sceneRow": 76,
        "sceneDate": "2012-12-04",
        "sceneTime": "02:53:16",
        "imagingStartTime": "2012-12-04 02:53:01",
        "imagingStopTime": "2012-12-04 02:53:31",
        "sunElevation": 27.31,
        "sunAzimuthElevation": 341.42,  # the sun azimuth + 180 in this schema
        "satOffNadir": 0.35,
        "cloudCoverage": 5,
        "bands": "1,2,3,4",
        "earthModel": "WGS_84",
        "mapProjection": "UTM",
        "zone": 50,
        "sceneCenterLat": HJ_CENTRE[1],
        "sceneCenterLong": HJ_CENTRE[0],
        "dataUpperLeftLat": ul[1],
        "dataUpperLeftLong": ul[0],
        "dataUpperRightLat": ur[1],
        "dataUpperRightLong": ur[0],
        "dataLowerRightLat": lr[1],
        "dataLowerRightLong": lr[0],
        "dataLowerLeftLat": ll[1],
        "dataLowerLeftLong": ll[0],
        "absCalibType": "ABSOLUTE",
    } | (overrides or {})
    body = "".join(f"\n    <{k}>{v}</{k}>" for k, v in fields.items())
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<root>\n  <data>{body}\n  </data>\n</root>\n'


def write_hj_ccd_lookalike(
    out_dir: Path,
    max_size: int = 300,
    per_band: bool = True,
    archive: str | None = "tar.gz",
    drop_band: int | None = None,
    name: str = HJ_NAME,
    overrides: dict[str, object] | None = None,
) -> Path:
    """An HJ-1A CCD2 LEVEL2 package: `.XML`, `-1.TIF`..`-4.TIF` (uint8, UTM 50N; band
    `drop_band` left out) or one 4-band `.TIF`, and a browse `.JPG`. Another satellite of the
    same layout is `name` with XML `overrides`; its files are numbered by the XML's `bands`."""
    scene = hj_scene(max_size)
    numbers = [int(b) for b in str((overrides or {}).get("bands", "1,2,3,4")).split(",")]
    folder = out_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "width": scene.width,
        "height": scene.height,
        "dtype": "uint8",
        "crs": HJ_CRS,
        "transform": scene.transform,
    }
    bands = [hj_band(scene, b) for b in range(1, len(numbers) + 1)]
    if per_band:
        for b, data in zip(numbers, bands, strict=True):
            if b != drop_band:
                with rasterio.open(folder / f"{name}-{b}.TIF", "w", count=1, **profile) as dst:
                    dst.write(data, 1)
    else:
        with rasterio.open(folder / f"{name}.TIF", "w", count=len(bands), **profile) as dst:
            dst.write(np.stack(bands))
    (folder / f"{name}.XML").write_text(hj_xml(scene, overrides), encoding="utf-8")
    write_jpeg(folder / f"{name}.JPG", 96, 96, seed=1)
    return pack(folder, archive)


# CBERS-04 MUX from CRESDA: the HJ layout, bands numbered 5-8 across the satellite's cameras.
CBERS_MUX_NAME = "CBERS04-MUX-1-61-20151108-L20000371158"
CBERS_MUX_FIELDS: dict[str, object] = {
    "productId": "371158",
    "sceneId": "1053379",
    "satelliteId": "CBERS-04",
    "sensorId": "MUX",
    "orbitId": 5362,
    "scenePath": 1,
    "sceneRow": 61,
    "sceneDate": "2015-11-08",
    "sceneTime": "03:02:41",
    "imagingStartTime": "2015-11-08 03:02:36",
    "imagingStopTime": "2015-11-08 03:02:46",
    "sunElevation": 33.9,
    "sunAzimuthElevation": 343.1,
    "bands": "5,6,7,8",
}

# --- LASAC ZY-3: sensor_corrected_metadata, `_rpc.txt`, `_pre.jpg`, `_ico.jpg` ------------------

LASAC_NAME = "ZY3_01a_mynnavp_881145_20160930_135710_0008_SASMAC_CHN_sec_rel_001_1610033562"


def lasac_xml(corners: list[tuple[float, float]], gsd: float, info_tag: str) -> str:
    """The `sensor_corrected_metadata` XML of the LASAC look-alike (`info_tag`: `productInfo`
    or `ProductInfo`, both seen). Times are compact Beijing time."""
    points = "".join(
        f"\n      <{name}><Longtitude>{lon}</Longtitude><Latitude>{lat}</Latitude>"
        f"<Altitude>2464</Altitude></{name}>"
        for name, (lon, lat) in zip(
            ("LeftTopPoint", "RightTopPoint", "RightBottomPoint", "LeftBottomPoint"),
            corners,
            strict=True,
        )
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<sensor_corrected_metadata>
  <{info_tag}>
    <ProductLevel>SC</ProductLevel>
    <ProductID>1610033562</ProductID>
    <SatelliteID>ZY3</SatelliteID>
    <ReceiveStationID>KSC</ReceiveStationID>
    <SensorID>NAD</SensorID>
    <OrbitID>23150</OrbitID>
    <SceneID>881145</SceneID>
    <ScenePath>881</ScenePath>
    <SceneRow>145</SceneRow>
    <OrbitType>precise</OrbitType>
    <AttitudeType>precise</AttitudeType>
    <SunAltitude>47.82</SunAltitude>
    <SunAzimuth>158.31</SunAzimuth>
    <SatAzimuth>101.9</SatAzimuth>
    <SatAltitude>87.6</SatAltitude>
    <RollViewingAngle>1.2</RollViewingAngle>
    <PitchViewingAngle>0.5</PitchViewingAngle>
    <TimeStamp>
      <StartTime>20160930135707.750</StartTime>
      <EndTime>20160930135712.750</EndTime>
      <CenterTime>20160930135710.250</CenterTime>
    </TimeStamp>
    <ImageGSD><Line>{gsd!r}</Line><Sample>{gsd!r}</Sample></ImageGSD>
    <RegionName>Ghazni</RegionName>
    <CloudPercent>3</CloudPercent>
    <ProductQuality>good</ProductQuality>
    <Bands>1</Bands>
    <ProductGeographicRange>{points}
    </ProductGeographicRange>
  </{info_tag}>
  <processInfo>
    <ProduceID>3562</ProduceID>
    <GeometryMethod>RPC</GeometryMethod>
  </processInfo>
</sensor_corrected_metadata>
"""


def write_lasac_lookalike(
    out_dir: Path,
    max_size: int = 300,
    archive: str | None = "tar.gz",
    drop_rpc: bool = False,
    info_tag: str = "productInfo",
    fixtures: Path = CRESDA,
) -> Path:
    """A LASAC ZY-3 nadir-camera package: `<name>.xml`, `<name>.tiff` (1 band, sensor
    geometry), `<name>_rpc.txt` (left out with `drop_rpc`), `_pre.jpg` and `_ico.jpg`."""
    rpc = rpc_from_rpb((fixtures / PAN_FIXTURE / f"{PAN_FIXTURE}-PAN1.rpb").read_text())
    full_w, full_h = 18192, 18000  # WidthInPixels, HeightInPixels of that PAN1 XML
    factor = max(1, math.ceil(max(full_w, full_h) / max_size))
    width, height = math.ceil(full_w / factor), math.ceil(full_h / factor)
    folder = out_dir / LASAC_NAME
    folder.mkdir(parents=True, exist_ok=True)
    write_tiff(folder / f"{LASAC_NAME}.tiff", width, height, 1)
    if not drop_rpc:
        (folder / f"{LASAC_NAME}_rpc.txt").write_text(scale_rpc_txt(format_rpc_txt(rpc), factor))
    corners = image_corners(rpc, full_w, full_h)
    xml = lasac_xml(corners, 2.1 * factor, info_tag)
    (folder / f"{LASAC_NAME}.xml").write_text(xml, encoding="utf-8")
    write_jpeg(folder / f"{LASAC_NAME}_pre.jpg", 128, 128, seed=2)
    write_jpeg(folder / f"{LASAC_NAME}_ico.jpg", 32, 32, seed=3)
    return pack(folder, archive)


# --- GF-7 DLC: `-BWDMUX`, `-BWDPAN`, `-FWDPAN` parts, each with its `.xml` and `.rpb` ----------

GF7_DLC_NAME = "GF7_DLC_E69.4_N33.3_20220624_L1A0006547030"
# The parts, built from the GF-1 PMS1 fixture's parts (the same pushbroom design: a 4-band MUX
# and 1-band PAN cameras); the forward view re-uses the PAN RPCs (it sees the same ground).
GF7_PARTS = {"BWDMUX": "MSS1", "BWDPAN": "PAN1", "FWDPAN": "PAN1"}


def write_gf7_dlc_lookalike(
    out_dir: Path, max_size: int = 300, archive: str | None = "tar.gz", fixtures: Path = CRESDA
) -> Path:
    """A GF-7 dual-line-camera package: one `.xml` + `.tiff` + `.rpb` per part (GF7_PARTS),
    SatelliteID GF7, SensorID DLC, the parts sharing one ProductID."""
    built = write_lookalike(fixtures / PAN_FIXTURE, out_dir / "pms", max_size, archive=None)
    folder = out_dir / GF7_DLC_NAME
    folder.mkdir(parents=True, exist_ok=True)
    for part, source in GF7_PARTS.items():
        for suffix in (".xml", ".tiff", ".rpb"):
            shutil.copyfile(
                built / f"{PAN_FIXTURE}-{source}{suffix}", folder / f"{GF7_DLC_NAME}-{part}{suffix}"
            )
        xml = folder / f"{GF7_DLC_NAME}-{part}.xml"
        xml.write_text(set_tags(xml.read_text(), {"SatelliteID": "GF7", "SensorID": "DLC"}))
    shutil.rmtree(built.parent)
    return pack(folder, archive)
