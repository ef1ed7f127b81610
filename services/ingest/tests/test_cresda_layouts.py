"""Package layouts without a real sample (look-alikes from lookalike_layouts): GF-6 WFV split
into RPC segments (ortho each, one mosaic), HJ-1 CCD one map-projected TIFF per band (stacked,
no ortho), LASAC ZY-3 (`sensor_corrected_metadata`, `_rpc.txt`, `_pre.jpg`, `_ico.jpg`)."""

from pathlib import Path

import psycopg
import pytest
import rasterio
from rasterio.transform import RPCTransformer
from rasterio.warp import transform as warp_transform
from shapely.geometry import Point, shape

from csdr_ingest.cresda.bands import calibration_for
from csdr_ingest.cresda.collections import collection_id, platform_of
from csdr_ingest.cresda.metadata import parse_metadata
from csdr_ingest.cresda.rpctext import format_rpc_txt, read_rpc_txt
from csdr_ingest.errors import PackageInvalid, RpcMissing
from csdr_ingest.pipeline import ingest_path, is_package
from tests.support.cresda_checks import (
    files_under,
    max_corner_distance_m,
    ortho_and_source_values,
    validate_published,
)
from tests.support.lookalike_layouts import (
    CBERS_MUX_FIELDS,
    CBERS_MUX_NAME,
    GF6_SEGMENTS,
    GF6_WFV_NAME,
    GF7_DLC_NAME,
    HJ_NAME,
    LASAC_NAME,
    scale_rpc_txt,
    segment_first_band,
    write_gf6_wfv_lookalike,
    write_gf7_dlc_lookalike,
    write_hj_ccd_lookalike,
    write_lasac_lookalike,
)


@pytest.fixture
def conn(pg_env):
    with psycopg.connect(autocommit=True) as c:
        yield c


def assert_nothing_registered(conn, settings) -> None:
    assert conn.execute("SELECT count(*) FROM pgstac.items").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM pgstac.collections").fetchone()[0] == 0
    assert files_under(settings.assets_dir) == []


def assert_near_xml_corners(item: dict, xml: Path) -> None:
    meta = parse_metadata(xml)
    assert meta.corners is not None
    assert max_corner_distance_m(item["geometry"], meta.corners.ring()[:4]) < 2000


def data_assets(item: dict) -> set[str]:
    return {k for k, a in item["assets"].items() if "data" in a["roles"]}


# --- GF-6 WFV ------------------------------------------------------------------------------------


def test_gf6_wfv_segments_become_one_8_band_cog_on_one_aligned_grid(conn, settings, tmp_path):
    package = write_gf6_wfv_lookalike(tmp_path / "in", max_size=300)
    [item] = ingest_path(package, conn, settings)
    props = item["properties"]
    assert item["id"] == "GF6_WFV_20210418_L1A1120054321" and item["collection"] == "gf6-wfv"
    assert (props["datetime"], props["start_datetime"], props["end_datetime"]) == (
        "2021-04-18T04:49:10Z",
        "2021-04-18T04:48:52Z",
        "2021-04-18T04:49:28Z",
    )
    assert data_assets(item) == {"data"}
    asset = item["assets"]["data"]
    assert [(b["name"], b["common_name"]) for b in asset["eo:bands"]] == [
        ("B1", "blue"),
        ("B2", "green"),
        ("B3", "red"),
        ("B4", "nir"),
        ("B5", "rededge"),
        ("B6", "rededge"),
        ("B7", "coastal"),
        ("B8", "yellow"),
    ]
    gains = calibration_for("GF6", "WFV", "", 2021)
    assert gains is not None
    assert [b["scale"] for b in asset["raster:bands"]] == list(gains.gains)
    gsd = props["gsd"]
    with rasterio.open(asset["href"]) as cog:
        assert cog.count == 8
        assert cog.crs.to_epsg() == 32645  # UTM zone of the product centre (89.0 E)
        assert (cog.transform.a, -cog.transform.e) == (gsd, gsd)
        assert cog.transform.c % gsd == 0 and cog.transform.f % gsd == 0
    # The footprint covers every segment (each segment's RPC centre) and the XML's corners,
    # which are the outer corners of the first and last segments.
    footprint = shape(item["geometry"])
    centres = gf6_segment_centres(tmp_path / "again")
    assert len(centres) == GF6_SEGMENTS
    for lon, lat in centres:
        assert footprint.contains(Point(lon, lat)), (lon, lat)
    assert_near_xml_corners(item, next((tmp_path / "again" / GF6_WFV_NAME).glob("*.xml")))
    validate_published(conn, item)


def gf6_segment_centres(out_dir: Path) -> list[tuple[float, float]]:
    """(lon, lat) of each segment's RPC ground offset, from an unpacked look-alike."""
    folder = write_gf6_wfv_lookalike(out_dir, max_size=300, archive=None)
    centres = []
    for k in range(1, GF6_SEGMENTS + 1):
        with rasterio.open(folder / f"{GF6_WFV_NAME}-{k}.tiff") as src:
            centres.append((src.rpcs.long_off, src.rpcs.lat_off))
    return centres


def test_gf6_wfv_mosaic_pixels_are_each_segments_source_pixels(conn, settings, tmp_path):
    folder = write_gf6_wfv_lookalike(tmp_path / "in", max_size=300, archive=None)
    [item] = ingest_path(folder, conn, settings)
    checked = 0
    with rasterio.open(item["assets"]["data"]["href"]) as ortho:
        for k in range(1, GF6_SEGMENTS + 1):
            with rasterio.open(folder / f"{GF6_WFV_NAME}-{k}.tiff") as src:
                rpcs, (h, w) = src.rpcs, src.shape
            with RPCTransformer(rpcs, RPC_HEIGHT=rpcs.height_off) as rpc:
                # Away from the 10% overlaps with the neighbouring segments.
                rows = [0.3 * h, 0.5 * h, 0.7 * h]
                cols = [0.25 * w, 0.5 * w, 0.75 * w]
                points = [rpc.xy(r, c) for r in rows for c in cols]
                for lon, lat in points:
                    # Band 3 (red) of segment k carries texture band 3 + first band - 1.
                    value, expected = ortho_and_source_values(
                        ortho, rpc, lon, lat, 3, segment_first_band(k) + 2
                    )
                    assert abs(value - expected) < 6, (k, lon, lat, value, expected)
                    checked += 1
    assert checked == 9 * GF6_SEGMENTS


def test_gf6_wfv_segment_without_its_rpb_fails_naming_it(conn, settings, tmp_path):
    package = write_gf6_wfv_lookalike(tmp_path / "in", max_size=200, drop_rpb=2)
    with pytest.raises(RpcMissing, match=rf"{GF6_WFV_NAME}-2\.rpb"):
        ingest_path(package, conn, settings)
    assert_nothing_registered(conn, settings)


# --- HJ-1 CCD (dash-style names, <root><data>, map-projected) ----------------------------------


@pytest.mark.parametrize("per_band", [True, False], ids=["one-tif-per-band", "multiband-tif"])
def test_hj_ccd_bands_are_stacked_in_order_without_reprojection(conn, settings, tmp_path, per_band):
    package = write_hj_ccd_lookalike(tmp_path / "in", max_size=800, per_band=per_band)
    [item] = ingest_path(package, conn, settings)
    props = item["properties"]
    assert item["id"] == "HJ1A_CCD2_20121204_L20000902055" and item["collection"] == "hj1a-ccd"
    # imagingStartTime/StopTime 10:53:01/10:53:31 Beijing time.
    assert (props["datetime"], props["start_datetime"], props["end_datetime"]) == (
        "2012-12-04T02:53:16Z",
        "2012-12-04T02:53:01Z",
        "2012-12-04T02:53:31Z",
    )
    assert props["platform"] == "hj-1a" and props["processing:level"] == "L2"
    assert props["view:sun_elevation"] == 27.31 and props["view:sun_azimuth"] == 161.42
    assert (props["csdr:path"], props["csdr:row"], props["eo:cloud_cover"]) == (453, 76, 5)
    assert data_assets(item) == {"data"}
    asset = item["assets"]["data"]
    assert [(b["common_name"], b["center_wavelength"]) for b in asset["eo:bands"]] == [
        ("blue", 0.475),
        ("green", 0.56),
        ("red", 0.66),
        ("nir", 0.83),
    ]
    assert item["assets"]["overview"]["type"] == "image/jpeg"
    source = write_hj_ccd_lookalike(tmp_path / "src", max_size=800, archive=None)
    with rasterio.open(asset["href"]) as cog:
        assert cog.crs.to_epsg() == 32650 and cog.count == 4 and cog.nodata == 0
        with rasterio.open(source / f"{HJ_NAME}-1.TIF") as band1:
            assert cog.transform == band1.transform and cog.shape == band1.shape
        lons, lats = [116.5, 115.5, 117.6, 116.9], [39.6, 40.5, 38.9, 40.9]
        xy = list(zip(*warp_transform("EPSG:4326", cog.crs, lons, lats), strict=True))
        published = [list(v) for v in cog.sample(xy)]
    for b in range(1, 5):
        with rasterio.open(source / f"{HJ_NAME}-{b}.TIF") as band:
            expected = [int(v[0]) for v in band.sample(xy)]
        assert [int(v[b - 1]) for v in published] == expected, b
        assert all(v > 0 for v in expected)
    assert_near_xml_corners(item, source / f"{HJ_NAME}.XML")
    validate_published(conn, item)


def test_unpacked_hj_folder_with_upper_case_xml_is_a_package(conn, settings, tmp_path):
    folder = write_hj_ccd_lookalike(tmp_path / "in", max_size=200, archive=None)
    assert is_package(folder) and not list(folder.glob("*.xml"))
    [item] = ingest_path(folder, conn, settings)
    assert item["id"] == "HJ1A_CCD2_20121204_L20000902055"


# SatelliteID as delivered -> STAC platform (CEOS/WMO OSCAR name, lower case), constellation.
VOCABULARY = {
    "GF1": ("gf-1", "gaofen"),
    "GF2": ("gf-2", "gaofen"),
    "GF6": ("gf-6", "gaofen"),
    "GF7": ("gf-7", "gaofen"),
    "ZY3": ("zy-3-01", "ziyuan"),
    "ZY3-02": ("zy-3-02", "ziyuan"),
    "ZY303": ("zy-3-03", "ziyuan"),
    "ZY02C": ("zy-1-02c", "ziyuan"),
    "ZY1E": ("zy-1-02d", "ziyuan"),
    "CB04": ("cbers-4", "cbers"),
    "CBERS-04": ("cbers-4", "cbers"),
    "HJ-1A": ("hj-1a", "huanjing"),
    "HJ1B": ("hj-1b", "huanjing"),
    "GF9": ("gf-9", "gaofen"),  # not yet known: written in the same style
}


@pytest.mark.parametrize("satellite", VOCABULARY)
def test_platform_and_constellation_come_from_the_shared_vocabulary(satellite):
    platform = platform_of(satellite)
    assert (platform.platform, platform.constellation) == VOCABULARY[satellite]


def test_cbers04_gets_its_platform_and_own_collection():
    assert collection_id("CBERS04", "MUX") == "cbers04-mux"
    assert platform_of("CBERS04").platform == "cbers-4"
    # Collection ids stay what they were: CRESDA's CB04 records keep their `cb04-*` collections.
    assert collection_id("CB04", "MUX") == "cb04-mux"
    assert collection_id("HJ1B", "CCD1") == "hj1b-ccd" != collection_id("HJ1A", "CCD2")
    # The 5 m and 10 m products of CBERS-04's PAN camera belong to one collection.
    assert collection_id("CBERS04", "PAN5M") == collection_id("CBERS04", "PAN10M") == "cbers04-pan"


# CBERS-04 numbers its bands across its cameras: MUX is 5-8, the PAN camera's 10 m bands 2-4.
CBERS_CASES = {
    "mux-5-8": ({}, [("B5", "blue"), ("B6", "green"), ("B7", "red"), ("B8", "nir")]),
    "pan10m-2-4": (
        {"sensorId": "PAN10M", "bands": "2,3,4"},
        [("B2", "green"), ("B3", "red"), ("B4", "nir")],
    ),
}


@pytest.mark.parametrize("case", CBERS_CASES)
def test_cbers04_bands_are_named_by_their_numbers_across_cameras(conn, settings, tmp_path, case):
    fields, expected = CBERS_CASES[case]
    fields = CBERS_MUX_FIELDS | fields
    package = write_hj_ccd_lookalike(
        tmp_path / "in", max_size=200, name=CBERS_MUX_NAME, overrides=fields
    )
    [item] = ingest_path(package, conn, settings)
    sensor = str(fields["sensorId"])
    assert item["id"] == f"CBERS04_{sensor}_20151108_L20000371158"
    assert item["properties"]["platform"] == "cbers-4"
    assert item["properties"]["datetime"] == "2015-11-08T03:02:41Z"
    bands = item["assets"]["data"]["eo:bands"]
    assert [(b["name"], b["common_name"]) for b in bands] == expected
    stored, collection = validate_published(conn, item)
    # Collection presets follow the common names: no blue in the PAN camera's 10 m bands.
    index = {common: i for i, (_, common) in enumerate(expected, start=1)}
    renders = collection["renders"]
    assert renders["false-color"]["bidx"] == [index["nir"], index["red"], index["green"]]
    assert ("true-color" in renders) == ("blue" in index)
    assert (
        renders["ndvi"]["expression"]
        == f"(b{index['nir']}-b{index['red']})/(b{index['nir']}+b{index['red']})"
    )
    # Stretches come from the statistics ingest stored, not from a fixed range.
    [[low, high], *_] = renders["false-color"]["rescale"]
    nir_stats = stored["assets"]["data"]["raster:bands"][index["nir"] - 1]["statistics"]
    assert nir_stats["minimum"] <= low < high <= nir_stats["maximum"]


def test_hj_ccd_package_missing_a_band_tif_fails_naming_it(conn, settings, tmp_path):
    package = write_hj_ccd_lookalike(tmp_path / "in", max_size=300, drop_band=3)
    with pytest.raises(PackageInvalid, match=rf"{HJ_NAME}-3\.TIF is missing"):
        ingest_path(package, conn, settings)
    assert_nothing_registered(conn, settings)


# --- GF-7 DLC (`-BWDMUX`/`-BWDPAN`/`-FWDPAN` parts) -----------------------------------------------


def test_gf7_dlc_parts_become_one_item_calibrated_per_camera_view(conn, settings, tmp_path):
    folder = write_gf7_dlc_lookalike(tmp_path / "in", max_size=300, archive=None)
    [item] = ingest_path(folder, conn, settings)
    assert item["id"] == "GF7_DLC_20220624_L1A0006547030" and item["collection"] == "gf7-dlc"
    assert item["properties"]["platform"] == "gf-7"
    assert item["properties"]["instruments"] == ["dlc"]
    assert data_assets(item) == {"bwdmux", "bwdpan", "fwdpan"}
    mux, pan = item["assets"]["bwdmux"], item["assets"]["bwdpan"]
    assert [b["common_name"] for b in mux["eo:bands"]] == ["blue", "green", "red", "nir"]
    assert [b["common_name"] for b in pan["eo:bands"]] == ["pan"]
    # The table lists GF-7's backward cameras as sensor BWD; it has no forward-view coefficients,
    # so the FWD PAN asset carries no scale rather than borrowed ones.
    bwd_mux = calibration_for("GF7", "BWD", "MUX", 2022)
    bwd_pan = calibration_for("GF7", "BWD", "PAN", 2022)
    assert bwd_mux is not None and bwd_pan is not None
    assert [b["scale"] for b in mux["raster:bands"]] == list(bwd_mux.gains)
    assert pan["raster:bands"][0]["scale"] == bwd_pan.gains[0]
    assert "scale" not in item["assets"]["fwdpan"]["raster:bands"][0]
    assert_near_xml_corners(item, folder / f"{GF7_DLC_NAME}-BWDPAN.xml")
    validate_published(conn, item)


# --- LASAC ZY-3 ---------------------------------------------------------------------------------


def test_lasac_zy3_package_with_rpc_txt_browse_and_icon(conn, settings, tmp_path):
    folder = write_lasac_lookalike(tmp_path / "in", max_size=300, info_tag="ProductInfo")
    [item] = ingest_path(folder, conn, settings)
    props = item["properties"]
    assert item["id"] == "ZY3_NAD_20160930_SC1610033562" and item["collection"] == "zy3-nad"
    # TimeStamp/CenterTime 20160930135710.250 is Beijing time.
    assert (props["datetime"], props["start_datetime"], props["end_datetime"]) == (
        "2016-09-30T05:57:10.250000Z",
        "2016-09-30T05:57:07.750000Z",
        "2016-09-30T05:57:12.750000Z",
    )
    # ZY-3 crosses the equator descending at 10:30 local solar time: the UTC reading of the
    # scene (69.4 E) must fall near it; the XML's clock read as UTC would be 8 h off.
    centre = shape(item["geometry"]).centroid
    solar_h = (5 + 57 / 60 + centre.x / 15) % 24
    assert abs(solar_h - 10.5) < 1.0, solar_h
    assert props["view:sun_elevation"] == 47.82 and props["csdr:product_id"] == "1610033562"
    assert props["view:off_nadir"] == pytest.approx(1.3, abs=1e-6)
    assert data_assets(item) == {"data"}
    assets = item["assets"]
    assert assets["thumbnail"]["type"] == assets["overview"]["type"] == "image/jpeg"
    shipped = write_lasac_lookalike(tmp_path / "src", max_size=300, archive=None)
    assert (
        Path(assets["thumbnail"]["href"]).read_bytes()
        == (shipped / f"{LASAC_NAME}_ico.jpg").read_bytes()
    )
    assert (
        Path(assets["overview"]["href"]).read_bytes()
        == (shipped / f"{LASAC_NAME}_pre.jpg").read_bytes()
    )
    assert_near_xml_corners(item, shipped / f"{LASAC_NAME}.xml")
    # Orthorectified with the `_rpc.txt` RPCs at the XML's GSD.
    rpcs = read_rpc_txt(shipped / f"{LASAC_NAME}_rpc.txt")
    with rasterio.open(assets["data"]["href"]) as ortho:
        gsd = parse_metadata(shipped / f"{LASAC_NAME}.xml").gsd
        assert ortho.transform.a == props["gsd"] == gsd
        with RPCTransformer(rpcs, RPC_HEIGHT=rpcs.height_off) as rpc:
            h, w = ortho.height, ortho.width
            for r, c in [(0.3, 0.3), (0.5, 0.5), (0.7, 0.6)]:
                lon, lat = rpc.xy(r * rpcs.line_off * 2, c * rpcs.samp_off * 2)
                value, expected = ortho_and_source_values(ortho, rpc, lon, lat, 1, 1)
                assert abs(value - expected) < 6, (lon, lat, value, expected, h, w)
    _, collection = validate_published(conn, item)
    assert collection["item_assets"]["thumbnail"]["type"] == "image/jpeg"


def test_lasac_package_without_rpc_txt_fails_naming_it(conn, settings, tmp_path):
    package = write_lasac_lookalike(tmp_path / "in", max_size=200, drop_rpc=True)
    with pytest.raises(RpcMissing, match=rf"{LASAC_NAME}_rpc\.txt"):
        ingest_path(package, conn, settings)
    assert_nothing_registered(conn, settings)


def test_damaged_rpc_txt_is_refused_by_name(conn, settings, tmp_path):
    folder = write_lasac_lookalike(tmp_path / "in", max_size=200, archive=None)
    rpc_txt = folder / f"{LASAC_NAME}_rpc.txt"
    rpc_txt.write_text("\n".join(rpc_txt.read_text().splitlines()[:30]))
    with pytest.raises(PackageInvalid, match=rf"{LASAC_NAME}_rpc\.txt: not a complete RPC file"):
        ingest_path(folder, conn, settings)
    assert_nothing_registered(conn, settings)


def test_lasac_metadata_variants(tmp_path):
    """`productInfo` in either case, `Longtitude` or `Longitude`, a plain `ImageGSD`, the
    `YYYY-MM-DD HH:MM:SS` time form; ProduceID when there is no ProductID."""
    xml = tmp_path / "ZY302.xml"
    xml.write_text(
        "<sensor_corrected_metadata><productinfo><ProductLevel>SC</ProductLevel>"
        "<SatelliteID>ZY3-02</SatelliteID><SensorID>MUX</SensorID><ImageGSD>5.8</ImageGSD>"
        "<TimeStamp><CenterTime>2020-01-02 03:04:05</CenterTime></TimeStamp>"
        "<CloudPercent>101</CloudPercent><Bands>1,2,3,4</Bands><ProductGeographicRange>"
        + "".join(
            f"<{p}><Longitude>{x}</Longitude><Latitude>{y}</Latitude></{p}>"
            for p, x, y in [
                ("LeftTopPoint", 110.0, 31.0),
                ("RightTopPoint", 110.6, 30.9),
                ("RightBottomPoint", 110.5, 30.4),
                ("LeftBottomPoint", 109.9, 30.5),
            ]
        )
        + "</ProductGeographicRange></productinfo>"
        "<processInfo><ProduceID>777</ProduceID></processInfo></sensor_corrected_metadata>"
    )
    meta = parse_metadata(xml)
    assert (meta.satellite, meta.sensor, meta.product_id, meta.gsd) == ("ZY302", "MUX", "777", 5.8)
    assert meta.center.isoformat() == "2020-01-01T19:04:05+00:00" == meta.start.isoformat()
    assert meta.cloud_cover is None and meta.bands == (1, 2, 3, 4)
    assert meta.corners is not None and meta.corners.bottom_left == (109.9, 30.5)


def test_rpc_txt_round_trip_and_scaling(tmp_path):
    folder = write_lasac_lookalike(tmp_path / "in", max_size=200, archive=None)
    rpc_txt = folder / f"{LASAC_NAME}_rpc.txt"
    full = read_rpc_txt(rpc_txt)
    # GDAL reads the same sidecar by itself beside the TIFF.
    with rasterio.open(folder / f"{LASAC_NAME}.tiff") as src:
        assert src.rpcs.line_off == pytest.approx(full.line_off)
        assert src.rpcs.samp_num_coeff == pytest.approx(full.samp_num_coeff)
    halved = tmp_path / "half_rpc.txt"
    halved.write_text(scale_rpc_txt(format_rpc_txt(full), 2))
    half = read_rpc_txt(halved)
    assert (half.line_off, half.samp_scale) == pytest.approx(
        (full.line_off / 2, full.samp_scale / 2)
    )
    assert (half.lat_off, half.line_num_coeff) == (full.lat_off, full.line_num_coeff)
