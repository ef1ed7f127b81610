"""The facts of tests/fixtures/cresda/README.md, read from the real XML files."""

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from csdr_ingest.cresda.bands import bands_for, calibration_for
from csdr_ingest.cresda.items import item_id_for
from csdr_ingest.cresda.metadata import is_product_metadata, parse_metadata
from csdr_ingest.errors import PackageInvalid
from tests.fixtures import CRESDA_GF2 as GF2
from tests.fixtures import CRESDA_PMS as PMS
from tests.fixtures import CRESDA_WFV as WFV


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_wfv_times_are_beijing_converted_to_utc_and_angles_follow_the_readme():
    meta = parse_metadata(WFV / f"{WFV.name}.xml")
    assert (meta.satellite, meta.sensor, meta.product_id, meta.scene_id) == (
        "GF1",
        "WFV3",
        "4819525",
        "7762114",
    )
    # CenterTime 13:03:08 Beijing = ReceiveTime 05:03:08 UTC.
    assert meta.center == utc(2020, 5, 23, 5, 3, 8)
    assert meta.start == utc(2020, 5, 23, 5, 2, 53)
    assert meta.end == utc(2020, 5, 23, 5, 3, 24)
    assert meta.level == "L1A" and meta.gsd == 16.0 and meta.bands == (1, 2, 3, 4)
    assert (meta.width, meta.height) == (12000, 13719)
    assert meta.cloud_cover == 38
    assert meta.sun_elevation == pytest.approx(90 - 13.7242)
    assert meta.sun_azimuth == pytest.approx(100.742)
    assert meta.incidence_angle == pytest.approx(90 - 81.2272)
    assert meta.off_nadir == pytest.approx(0.000236, abs=1e-6)
    assert (meta.orbit, meta.path, meta.row) == (38136, 40, 117)
    assert meta.corners is not None and meta.corners.top_left == (88.2994, 25.0142)


def test_pms_parts_share_the_product_and_pan_is_one_band():
    mss = parse_metadata(PMS / f"{PMS.name}-MSS1.xml")
    pan = parse_metadata(PMS / f"{PMS.name}-PAN1.xml")
    assert mss.product_id == pan.product_id == "6547030"
    assert mss.center == utc(2022, 6, 24, 5, 39, 9)
    assert pan.bands == (5,) and pan.gsd == 2.0 and mss.gsd == 8.0
    assert mss.off_nadir == pytest.approx(1.76003, abs=1e-5)


def test_gf2_date_crosses_midnight_cloud_101_is_unknown_and_id_comes_from_the_xml():
    meta = parse_metadata(GF2 / f"{GF2.name}-MSS2.xml")
    # Beijing 2023-02-13 22:17:10 is 14:17:10 UTC, the ReceiveTime.
    assert meta.center == utc(2023, 2, 13, 14, 17, 10)
    assert meta.cloud_cover is None  # CloudPercent 101
    assert meta.gsd == pytest.approx(3.24)
    assert meta.product_id == "12889847001"  # the file name says 2147483647
    assert item_id_for(meta) == "GF2_PMS2_20230213_L1A12889847001"
    assert "2147483647" not in item_id_for(meta)
    assert meta.corners is not None and meta.corners.top_left[0] < 0 < -meta.corners.top_left[1]


def test_order_xml_and_aux_xml_are_not_product_metadata(tmp_path):
    assert not is_product_metadata(GF2 / "order.xml")
    aux = tmp_path / "scene.tiff.aux.xml"
    aux.write_text("<PAMDataset/>")
    assert not is_product_metadata(aux)
    assert is_product_metadata(GF2 / f"{GF2.name}.xml")
    with pytest.raises(PackageInvalid, match="order.xml"):
        parse_metadata(GF2 / "order.xml")


def test_lower_camel_root_data_schema(tmp_path):
    xml = tmp_path / "HJ1A-CCD2-453-76-20121204-L20000902055.XML"
    xml.write_text(
        "<root><data><productId>902055</productId><sceneId>1234</sceneId>"
        "<satelliteId>HJ-1A</satelliteId><sensorId>CCD2</sensorId>"
        "<productLevel>LEVEL2</productLevel><pixelSpacing>30</pixelSpacing>"
        "<imagingStartTime>2012-12-04 03:20:01</imagingStartTime>"
        "<imagingStopTime>2012-12-04 03:20:31</imagingStopTime>"
        "<sunElevation>31.5</sunElevation><sunAzimuthElevation>340.2</sunAzimuthElevation>"
        "<satOffNadir>0.5</satOffNadir><bands>1,2,3,4</bands>"
        "<dataUpperLeftLat>40.1</dataUpperLeftLat><dataUpperLeftLong>116.1</dataUpperLeftLong>"
        "<dataUpperRightLat>40.0</dataUpperRightLat><dataUpperRightLong>117.2</dataUpperRightLong>"
        "<dataLowerRightLat>39.1</dataLowerRightLat><dataLowerRightLong>117.0</dataLowerRightLong>"
        "<dataLowerLeftLat>39.2</dataLowerLeftLat><dataLowerLeftLong>115.9</dataLowerLeftLong>"
        "</data></root>"
    )
    assert xml.suffix == ".XML" and not is_product_metadata(xml.with_suffix(".txt"))
    meta = parse_metadata(xml)
    assert (meta.satellite, meta.sensor, meta.level, meta.gsd) == ("HJ1A", "CCD2", "L2", 30.0)
    # `<root><data>` times are UTC; its sun azimuth counts from the opposite direction.
    assert meta.start == utc(2012, 12, 4, 3, 20, 1) and meta.center == utc(2012, 12, 4, 3, 20, 16)
    assert meta.time_zone == "UTC"
    assert meta.sun_elevation == 31.5 and meta.sun_azimuth == pytest.approx(160.2)
    assert meta.off_nadir == 0.5


def test_calibration_of_the_acquisition_year_or_the_latest_before_it():
    wfv = calibration_for("GF1", "WFV3", "", 2020)
    assert wfv is not None and wfv.year == 2020 and wfv.gains[0] == 0.2106
    gf2 = calibration_for("GF2", "PMS2", "mss", 2023)  # no 2023 table yet: 2022's
    assert gf2 is not None and gf2.year == 2022 and gf2.gains == (0.1743, 0.1784, 0.1668, 0.1912)
    pan = calibration_for("GF1", "PMS1", "pan", 2022)
    assert pan is not None and pan.gains == (0.1306,) and pan.offsets == (0.0,)
    assert calibration_for("GF9", "XYZ", "", 2020) is None


# (SatelliteID, SensorID, XML Bands, band count) -> the last band's (name, common name, edges).
BAND_TABLES = {
    "gf1-wfv": (("GF1", "WFV3", (1, 2, 3, 4), 4), []),
    "gf6-wfv": (("GF6", "WFV", (), 8), [("B8", "yellow", 0.59, 0.63)]),
    "hj1b-ccd": (("HJ1B", "CCD1", (1, 2, 3, 4), 4), [("B4", "nir", 0.76, 0.90)]),
    "zy02c-mux": (("ZY02C", "PMS", (2, 3, 4), 3), [("B4", "nir", 0.77, 0.89)]),
    "zy02c-hrc": (("ZY02C", "HRC", (1,), 1), [("PAN", "pan", 0.50, 0.80)]),
    "zy1e-vnic": (("ZY1E", "VNIC", (), 8), [("B9", "nir09", 0.871, 1.047)]),
    "zy1e-pan": (("ZY1E", "VNIC", (1,), 1), [("B1", "pan", 0.451, 0.902)]),
    "cbers04-irs": (("CBERS04", "IRS", (9, 10, 11, 12), 4), [("B12", "lwir", 10.4, 12.5)]),
}


@pytest.mark.parametrize("case", BAND_TABLES)
def test_band_tables_per_satellite_and_sensor(case):
    (satellite, sensor, numbers, count), expected = BAND_TABLES[case]
    meta = replace(parse_metadata(WFV / f"{WFV.name}.xml"), satellite=satellite, sensor=sensor)
    bands = bands_for(replace(meta, bands=numbers), count)
    assert len(bands) == count and len({b.name for b in bands}) == count
    last = bands[-1]
    if expected:
        assert [(last.name, last.common_name, last.low_um, last.high_um)] == expected
    else:  # GF-1/GF-2: blue, green, red, nir
        assert [b.common_name for b in bands] == ["blue", "green", "red", "nir"]
