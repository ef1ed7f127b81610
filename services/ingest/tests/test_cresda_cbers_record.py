"""The real CBERS-04 MUX `<root><data>` record beside a 4-band TIFF becomes an item with the
record's UTC scene time, the vocabulary's names, MUX bands, the record's sun in STAC's convention
and the footprint at the record's corners."""

from datetime import datetime

import psycopg
import pytest
import rasterio
from rasterio.warp import transform as warp_transform

from csdr_ingest.cresda.sun import sun_position
from csdr_ingest.pipeline import ingest_path
from tests.support.cbers_lookalike import RECORD, record_fields, write_cbers_mux_package
from tests.support.cresda_checks import max_corner_distance_m, validate_published


@pytest.fixture
def conn(pg_env):
    with psycopg.connect(autocommit=True) as c:
        yield c


def test_cbers04_mux_record_and_tiff_become_an_item_in_utc_and_the_vocabulary(
    conn, settings, tmp_path
):
    folder = write_cbers_mux_package(tmp_path / "in", max_size=400)
    [item] = ingest_path(folder, conn, settings)
    props = item["properties"]
    # imagingStartTime/StopTime 07:13:58.75/07:14:16.58 UTC: the record's own day.
    assert item["id"] == "CB04_MUX_20151023_L20000019603"
    assert (props["datetime"], props["start_datetime"], props["end_datetime"]) == (
        "2015-10-23T07:14:07.665000Z",
        "2015-10-23T07:13:58.750000Z",
        "2015-10-23T07:14:16.580000Z",
    )
    assert (props["platform"], props["constellation"], props["instruments"]) == (
        "cbers-4",
        "cbers",
        ["mux"],
    )
    assert props["processing:level"] == "L2" and item["collection"] == "cb04-mux"
    # MUX is CBERS-04's camera of bands 5-8; the record numbers them 1-4.
    bands = item["assets"]["data"]["eo:bands"]
    assert [(b["name"], b["common_name"]) for b in bands] == [
        ("B5", "blue"),
        ("B6", "green"),
        ("B7", "red"),
        ("B8", "nir"),
    ]
    assert [(b["center_wavelength"], b["full_width_half_max"]) for b in bands] == [
        (0.485, 0.07),
        (0.555, 0.07),
        (0.66, 0.06),
        (0.83, 0.12),
    ]
    # The record's sun: elevation as stated, azimuth 267.523 turned clockwise from north,
    # within 5 degrees of the sun computed at the scene centre (85.2).
    fields = record_fields()
    assert props["view:sun_elevation"] == float(fields["sunElevation"]) == 66.954
    assert props["view:sun_azimuth"] == pytest.approx(87.523)
    centre = float(fields["sceneCenterLong"]), float(fields["sceneCenterLat"])
    when = datetime.fromisoformat(props["datetime"].replace("Z", "+00:00"))
    elevation, azimuth = sun_position(*centre, when)
    assert abs(props["view:sun_azimuth"] - azimuth) < 5
    assert abs(props["view:sun_elevation"] - elevation) < 5
    assert "csdr:time_contradicts_sun" not in props
    # The footprint's outline passes the record's four data corners within a pixel or so.
    corners = [
        (float(fields[f"data{c}Long"]), float(fields[f"data{c}Lat"]))
        for c in ("UpperLeft", "UpperRight", "LowerRight", "LowerLeft")
    ]
    with rasterio.open(item["assets"]["data"]["href"]) as cog:
        pixel = cog.transform.a
        assert cog.crs.to_epsg() == 32738 and cog.count == 4 and cog.nodata == 0
        xs, ys = warp_transform("EPSG:4326", cog.crs, [centre[0]], [centre[1]])
        published = next(cog.sample([(xs[0], ys[0])]))
    assert max_corner_distance_m(item["geometry"], corners) < 1.5 * pixel
    with rasterio.open(folder / f"{RECORD.stem}.TIF") as source:
        assert list(next(source.sample([(xs[0], ys[0])]))) == list(published)
        assert all(v > 0 for v in published)
    validate_published(conn, item)
