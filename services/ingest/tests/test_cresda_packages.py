"""Look-alike packages of every fixture through the real pipeline into pgSTAC."""

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import psycopg
import pytest
import rasterio
from rasterio.transform import RPCTransformer
from shapely.geometry import Polygon, shape

from csdr_ingest.cresda.metadata import parse_metadata
from csdr_ingest.errors import PackageInvalid, RpcMissing
from csdr_ingest.pipeline import ingest_path
from tests.fixtures import CRESDA_GF2 as GF2
from tests.fixtures import CRESDA_PMS as PMS
from tests.fixtures import CRESDA_WFV as WFV
from tests.support.cresda_checks import (
    ITEM_SCHEMA,
    files_under,
    max_corner_distance_m,
    ortho_and_source_values,
    validate,
    validate_published,
)
from tests.support.lookalike import write_lookalike

# fixture, parts dropped from the look-alike, expected id, UTC times, cloud cover, assets
CASES = [
    (
        WFV,
        (),
        "GF1_WFV3_20200523_L1A0004819525",
        ("2020-05-23T05:03:08Z", "2020-05-23T05:02:53Z", "2020-05-23T05:03:24Z"),
        38,
        {"data"},
    ),
    (
        PMS,
        (),
        "GF1_PMS1_20220624_L1A0006547030",
        ("2022-06-24T05:39:09Z", "2022-06-24T05:39:07Z", "2022-06-24T05:39:12Z"),
        0,
        {"mss", "pan"},
    ),
    # The real GF-2 delivery lacks the MSS2 RPB; its PAN2 part alone is a complete package.
    (
        GF2,
        ("MSS2",),
        "GF2_PMS2_20230213_L1A12889847001",
        ("2023-02-13T14:17:10Z", "2023-02-13T14:17:09Z", "2023-02-13T14:17:12Z"),
        None,
        {"pan"},
    ),
]


@pytest.fixture
def conn(pg_env):
    with psycopg.connect(autocommit=True) as c:
        yield c


@pytest.mark.parametrize(("fixture", "drop", "item_id", "times", "cloud", "parts"), CASES)
def test_lookalike_package_becomes_an_exact_item(
    conn, settings, tmp_path, fixture, drop, item_id, times, cloud, parts
):
    package = write_lookalike(fixture, tmp_path / "in", max_size=500, drop=drop)
    [item] = ingest_path(package, conn, settings)
    props = item["properties"]
    assert item["id"] == item_id and props["csdr:product_id"] in item_id
    assert (props["datetime"], props["start_datetime"], props["end_datetime"]) == times
    assert props.get("eo:cloud_cover") == cloud
    assert ("eo:cloud_cover" in props) is (cloud is not None)
    assert {k for k, a in item["assets"].items() if "data" in a["roles"]} == parts
    assert {"thumbnail", "metadata"} <= set(item["assets"])
    for xml in fixture.glob("*.xml"):
        if xml.name == "order.xml" or any(xml.stem.endswith(f"-{d}") for d in drop):
            continue
        meta = parse_metadata(xml)
        if meta.corners is None or xml.stem == fixture.name and len(parts) > 1:
            continue
        ring = meta.corners.ring()[:4]
        assert max_corner_distance_m(item["geometry"], ring) < 2000, xml.name
        # Right hemisphere: the footprint's centre and the XML corners agree in sign.
        centre = shape(item["geometry"]).centroid
        xml_centre = Polygon(ring).centroid
        assert np.sign(centre.x) == np.sign(xml_centre.x)
        assert np.sign(centre.y) == np.sign(xml_centre.y)
    stored = conn.execute("SELECT pgstac.get_item(%s, %s)", (item_id, item["collection"]))
    stored_item = stored.fetchone()[0]
    assert stored_item["properties"]["datetime"] == times[0]
    # Every asset carries its size and sha2-256 multihash (STAC file extension) for copiers.
    for asset in stored_item["assets"].values():
        path = Path(asset["href"])
        assert path.is_file()
        assert asset["file:size"] == path.stat().st_size
        assert asset["file:checksum"] == "1220" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_orthorectified_pixel_is_the_source_pixel_gdal_rpc_maps_the_point_to(
    conn, settings, tmp_path
):
    package = write_lookalike(WFV, tmp_path / "in", max_size=500, archive=None)
    [item] = ingest_path(package, conn, settings)
    tiff = next(package.glob("*.tiff"))
    with rasterio.open(tiff) as src:
        rpcs, height = src.rpcs, src.rpcs.height_off
    cog = item["assets"]["data"]["href"]
    checked = 0
    with rasterio.open(cog) as ortho, RPCTransformer(rpcs, RPC_HEIGHT=height) as rpc:
        for lon, lat in [(88.6, 24.5), (89.0, 23.9), (89.3, 23.4), (88.4, 24.0), (89.6, 24.2)]:
            value, expected = ortho_and_source_values(ortho, rpc, lon, lat, 3, 3)
            if value == 0:
                continue  # outside the swath
            assert abs(value - expected) < 6, (lon, lat, value, expected)
            checked += 1
    assert checked >= 4


def test_missing_rpb_fails_naming_the_file_and_registers_nothing(conn, settings, tmp_path):
    package = write_lookalike(GF2, tmp_path / "in", max_size=500)
    with pytest.raises(
        RpcMissing, match=r"GF2_PMS2_W72\.3_S36\.7_20230213_L1A2147483647-MSS2\.rpb"
    ):
        ingest_path(package, conn, settings)
    assert conn.execute("SELECT count(*) FROM pgstac.items").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM pgstac.collections").fetchone()[0] == 0
    assert files_under(settings.assets_dir) == []


def test_corrupt_archive_and_folder_without_metadata_are_refused(conn, settings, tmp_path):
    package = write_lookalike(WFV, tmp_path / "in", max_size=300)
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(package.read_bytes()[:5000])
    with pytest.raises(PackageInvalid, match="damaged or truncated"):
        ingest_path(broken, conn, settings)
    empty = tmp_path / "not_a_package"
    empty.mkdir()
    (empty / "order.xml").write_text("<InterfaceFile/>")
    with pytest.raises(PackageInvalid, match="no product metadata"):
        ingest_path(empty, conn, settings)
    assert files_under(settings.assets_dir) == []


@pytest.mark.parametrize("archive", ["tar.gz", "zip"])
def test_archive_member_escaping_the_package_is_refused_by_name(conn, settings, tmp_path, archive):
    evil = tmp_path / f"evil.{archive}"
    if archive == "zip":
        with zipfile.ZipFile(evil, "w") as zf:
            zf.writestr("../outside.xml", "<ProductMetaData/>")
    else:
        with tarfile.open(evil, "w:gz") as tf:
            member = tarfile.TarInfo("../outside.xml")
            member.size = 18
            tf.addfile(member, io.BytesIO(b"<ProductMetaData/>"))
    with pytest.raises(PackageInvalid, match=r"member '\.\./outside\.xml'"):
        ingest_path(evil, conn, settings)
    assert not (tmp_path / "outside.xml").exists()
    assert files_under(settings.assets_dir) == []


def test_reingest_replaces_item_and_files_and_zip_works(conn, settings, tmp_path):
    settings.replaced_grace_s = 0  # the old files go with the publish
    first = ingest_path(write_lookalike(WFV, tmp_path / "a", max_size=300), conn, settings)
    zipped = write_lookalike(WFV, tmp_path / "b", max_size=300, archive="zip")
    second = ingest_path(zipped, conn, settings)
    assert first[0]["id"] == second[0]["id"]
    assert conn.execute("SELECT count(*) FROM pgstac.items").fetchone()[0] == 1
    hrefs = {Path(a["href"]) for a in second[0]["assets"].values()}
    assert set(files_under(settings.assets_dir / "gf1-wfv")) == hrefs


def test_items_and_collections_validate_against_their_schemas(conn, settings, tmp_path):
    [item] = ingest_path(write_lookalike(PMS, tmp_path / "in", max_size=300), conn, settings)
    item, collection = validate_published(conn, item)
    assert collection["license"] and collection["providers"] and collection["keywords"]
    assert {"true-color", "false-color", "ndvi"} <= set(collection["renders"])
    assert collection["extent"]["temporal"]["interval"][0][0].startswith("2022-06-24T05:39:07")
    # A schema violation is caught (the test can fail).
    broken = {**item, "properties": {**item["properties"], "view:off_nadir": 120}}
    with pytest.raises(AssertionError, match="view"):
        validate(broken, ITEM_SCHEMA)


def test_orthorectified_pixels_have_the_xml_gsd_on_an_aligned_grid(conn, settings, tmp_path):
    package = write_lookalike(WFV, tmp_path / "in", max_size=500, archive=None)
    gsd = parse_metadata(next(package.glob("*.xml"))).gsd
    [item] = ingest_path(package, conn, settings)
    with rasterio.open(item["assets"]["data"]["href"]) as cog:
        assert cog.crs.to_epsg() == 32645  # UTM zone of the scene centre (89.0 E, 23.8 N)
        assert (cog.transform.a, -cog.transform.e) == (gsd, gsd)
        assert cog.transform.c % gsd == 0 and cog.transform.f % gsd == 0
        assert item["properties"]["gsd"] == gsd == item["assets"]["data"]["gsd"]
