"""Acquisition times checked against the sun: every record of every metadata schema, read in its
schema's time zone, puts the computed sun where the record says it stood; a record read in the
wrong zone is refused at ingest, naming both elevations, unless the operator accepts it."""

import re
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from csdr_ingest.cresda.metadata import parse_metadata
from csdr_ingest.cresda.sun import check_sun, sun_position
from csdr_ingest.errors import TimeContradictsSun
from csdr_ingest.pipeline import ingest_path
from tests.fixtures import CRESDA, CRESDA_RECORDS, CRESDA_WFV
from tests.support.cresda_checks import files_under
from tests.support.lookalike_layouts import (
    CBERS_MUX_FIELDS,
    hj_scene,
    hj_xml,
    write_gf6_wfv_lookalike,
    write_hj_ccd_lookalike,
    write_lasac_lookalike,
)
from tests.support.time_zones import beijing_hj_package, shift_times

CBERS_RECORD = CRESDA_RECORDS / "CB04-MUX-58-115-20151023-L20000019603.XML"

# Real records: (file, the UTC centre time the sun confirms, tolerance in degrees).
REAL = [
    *(
        (xml, 0.5)
        for xml in sorted(CRESDA.glob("*/*.xml"))
        # order.xml is not product metadata; the records are listed below
        if xml.name != "order.xml" and xml.parent != CRESDA_RECORDS
    ),
    *((xml, 0.5) for xml in sorted(CRESDA_RECORDS.glob("GF*.xml"))),
    (CBERS_RECORD, 5.0),
]


@pytest.mark.parametrize(("xml", "tolerance"), REAL, ids=[x.name for x, _ in REAL])
def test_every_real_record_fits_the_sun_in_its_schemas_time_zone(xml, tolerance):
    check = check_sun(parse_metadata(xml))
    assert check is not None and check.agrees
    assert check.elevation_difference < tolerance, check
    assert check.azimuth_difference is not None and check.azimuth_difference < tolerance, check


def test_cbers_record_is_utc_and_its_azimuth_is_turned_clockwise_from_north():
    meta = parse_metadata(CBERS_RECORD)
    # imagingStartTime/StopTime 07:13:58.75/07:14:16.58, UTC: the same day, not the previous one.
    assert meta.time_zone == "UTC"
    assert meta.center.isoformat() == "2015-10-23T07:14:07.665000+00:00"
    # sunAzimuthElevation 267.523 counts from the opposite direction.
    assert meta.sun_azimuth == pytest.approx(87.523)
    assert meta.sun_elevation == 66.954
    elevation, azimuth = sun_position(47.874427, -13.678494, meta.center)  # sceneCenterLong/Lat
    assert (round(elevation, 1), round(azimuth, 1)) == (70.6, 85.2)
    # Read as Beijing time, the scene would be at night: the sun 43 degrees below the horizon.
    night, _ = sun_position(47.874427, -13.678494, meta.center - timedelta(hours=8))
    assert round(night) == -43


def lookalike_records(tmp_path: Path) -> list[Path]:
    """The product XMLs of the look-alike layouts (HJ-1 and CBERS-04 `<root><data>`, LASAC
    `sensor_corrected_metadata`, GF-6 ProductMetaData)."""
    hj = tmp_path / "HJ.XML"
    hj.write_text(hj_xml(hj_scene(200)))
    cbers = tmp_path / "CBERS.XML"
    cbers.write_text(hj_xml(hj_scene(200), CBERS_MUX_FIELDS))
    lasac = write_lasac_lookalike(tmp_path / "lasac", max_size=100, archive=None)
    gf6 = write_gf6_wfv_lookalike(tmp_path / "gf6", max_size=100, archive=None)
    return [hj, cbers, *lasac.glob("*.xml"), *gf6.glob("*.xml")]


def test_every_lookalike_record_fits_the_sun_too(tmp_path):
    records = lookalike_records(tmp_path)
    assert len(records) == 4
    for xml in records:
        check = check_sun(parse_metadata(xml))
        assert check is not None and check.agrees, xml.name
        assert check.elevation_difference < 5 and check.azimuth_difference < 10, check


WRONG_ZONE = [
    # A CRESDA GF-1 XML written in UTC, read as Beijing time: 8 h early, before sunrise.
    (CRESDA_WFV, "*.xml", -8, "Beijing time"),
    # The CBERS-04 record written in Beijing time, read as UTC: 8 h late, after sunset.
    (CRESDA_RECORDS, CBERS_RECORD.name, 8, "UTC"),
]


@pytest.mark.parametrize(("folder", "pattern", "hours", "zone"), WRONG_ZONE, ids=["gf1", "cbers"])
def test_a_record_read_in_the_wrong_zone_names_both_elevations(
    tmp_path, folder, pattern, hours, zone
):
    [source] = folder.glob(pattern)
    xml = tmp_path / source.name
    xml.write_text(shift_times(source.read_text(), hours))
    meta = parse_metadata(xml)
    check = check_sun(meta)
    assert check is not None and not check.agrees
    reason = check.reason()
    assert f"{check.computed_elevation:.1f} deg" in reason
    assert f"{meta.sun_elevation:.1f} deg" in reason
    assert zone in reason and xml.name in reason


@pytest.fixture
def conn(pg_env):
    with psycopg.connect(autocommit=True) as c:
        yield c


def test_ingest_refuses_a_package_whose_time_the_sun_contradicts(conn, settings, tmp_path):
    folder = beijing_hj_package(tmp_path / "in")
    with pytest.raises(TimeContradictsSun) as refused:
        ingest_path(folder, conn, settings)
    # Read as UTC, 10:53 is evening at 116.5 E in December: the sun below the horizon.
    assert re.search(r"the sun was then at -\d+\.\d deg elevation", str(refused.value))
    assert "sun elevation of 27.3 deg" in str(refused.value)
    assert "read as UTC" in str(refused.value)
    assert conn.execute("SELECT count(*) FROM pgstac.items").fetchone()[0] == 0
    assert files_under(settings.assets_dir) == []


def test_operator_may_publish_anyway_and_the_item_says_so(conn, settings, tmp_path):
    folder = beijing_hj_package(tmp_path / "in")
    [item] = ingest_path(folder, conn, settings, accept_sun_disagreement=True)
    props = item["properties"]
    assert props["csdr:time_contradicts_sun"] is True
    assert props["csdr:computed_sun_elevation"] < 0 < props["view:sun_elevation"]
    stored = conn.execute("SELECT pgstac.get_item(%s, %s)", (item["id"], item["collection"]))
    assert stored.fetchone()[0]["properties"]["csdr:time_contradicts_sun"] is True


def test_items_whose_time_agrees_carry_the_computed_sun_only(conn, settings, tmp_path):
    folder = write_hj_ccd_lookalike(tmp_path / "in", max_size=200, archive=None)
    [item] = ingest_path(folder, conn, settings)
    props = item["properties"]
    assert "csdr:time_contradicts_sun" not in props
    assert abs(props["csdr:computed_sun_elevation"] - props["view:sun_elevation"]) < 5
    assert abs(props["csdr:computed_sun_azimuth"] - props["view:sun_azimuth"]) < 5
