"""RPC orthorectification on a DEM held in the catalogue: the elevation items of the collection
named in CSDR_INGEST_DEM_COLLECTION that cover the scene, read by GDAL, move the pixels exactly
as GDAL's RPC transformer with that DEM does; the RPB's mean height is only the fallback."""

from datetime import datetime
from pathlib import Path

import numpy as np
import psycopg
import pytest
import rasterio
from rasterio.transform import RPCTransformer, from_origin

from csdr_ingest.pipeline import ingest_file, ingest_path
from csdr_ingest.terrain import mosaic_vrt
from tests.fixtures import CRESDA_WFV as WFV
from tests.support.cresda_checks import ortho_and_source_values
from tests.support.lookalike import write_lookalike

# Inside the WFV3 swath, towards its edges, where the view is most oblique (up to ~24 degrees).
POINTS = [(88.2, 24.6), (89.9, 24.4), (88.1, 23.3), (89.7, 23.1), (88.5, 23.9), (89.5, 24.0)]
DEM_RES = 0.01  # degrees


def heights(west: float, north: float, width: int, height: int) -> np.ndarray:
    """1200 to 2200 m, varying over tens of kilometres."""
    lon = west + (np.arange(width) + 0.5) * DEM_RES
    lat = north - (np.arange(height) + 0.5) * DEM_RES
    return (1700 + 500 * np.sin(3 * lon)[None, :] * np.cos(4 * lat)[:, None]).astype("float32")


def write_dem_tile(path: Path, west: float, north: float, width: int, height: int) -> Path:
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": "float32",
        "crs": "EPSG:4326",
        "nodata": -32768.0,
        "transform": from_origin(west, north, DEM_RES, DEM_RES),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(heights(west, north, width, height), 1)
    return path


@pytest.fixture
def conn(pg_env):
    with psycopg.connect(autocommit=True) as c:
        yield c


def ingest_dem_tiles(conn, settings, tmp_path: Path) -> list[Path]:
    """Two DEM tiles side by side over the WFV3 scene (87.4-90.6 E, 22.3-25.4 N), published
    into the `srtm-dem` collection; returns their COGs."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    cogs = []
    for name, west in (("west", 87.4), ("east", 89.0)):
        source = write_dem_tile(tmp_path / f"DEM_{name}.tif", west, 25.4, 160, 310)
        item = ingest_file(
            source, conn, settings, collection="srtm-dem", when=datetime(2000, 2, 11)
        )
        cogs.append(Path(item["assets"]["data"]["href"]))
    return cogs


def test_ortho_with_a_dem_collection_moves_pixels_as_gdal_rpc_with_that_dem(
    conn, settings, tmp_path
):
    cogs = ingest_dem_tiles(conn, settings, tmp_path / "dem")
    # The reference DEM GDAL is given: the two published COGs as one mosaic.
    reference = tmp_path / "reference_dem.vrt"
    reference.write_text(mosaic_vrt(cogs))
    package = write_lookalike(WFV, tmp_path / "in", max_size=500, archive=None)
    dem_settings = settings.model_copy(update={"dem_collection": "srtm-dem"})
    [item] = ingest_path(package, conn, dem_settings)
    with rasterio.open(next(package.glob("*.tiff"))) as src:
        rpcs = src.rpcs
    with (
        rasterio.open(item["assets"]["data"]["href"]) as ortho,
        RPCTransformer(rpcs, RPC_DEM=str(reference), RPC_DEMINTERPOLATION="bilinear") as on_dem,
        RPCTransformer(rpcs, RPC_HEIGHT=rpcs.height_off) as on_mean,
    ):
        moved = []
        for lon, lat in POINTS:
            value, expected = ortho_and_source_values(ortho, on_dem, lon, lat, 3, 3)
            assert value > 0, (lon, lat)
            assert abs(value - expected) < 6, (lon, lat, value, expected)
            _, at_mean_height = ortho_and_source_values(ortho, on_mean, lon, lat, 3, 3)
            moved.append(abs(value - at_mean_height))
    # The DEM mattered: at the mean height (-42 m) the oblique pixels would have come from
    # elsewhere (measured: 18 and 13 grey levels off at the swath's east edge).
    assert sum(m > 12 for m in moved) >= 2, moved


def test_without_dem_coverage_the_mean_height_is_the_fallback(conn, settings, tmp_path):
    # A DEM far from the scene: nothing covers it, so the RPB's mean height is used.
    far = write_dem_tile(tmp_path / "far.tif", 10.0, 50.0, 20, 20)
    ingest_file(far, conn, settings, collection="srtm-dem", when=datetime(2000, 2, 11))
    package = write_lookalike(WFV, tmp_path / "in", max_size=500, archive=None)
    dem_settings = settings.model_copy(update={"dem_collection": "srtm-dem"})
    [item] = ingest_path(package, conn, dem_settings)
    with rasterio.open(next(package.glob("*.tiff"))) as src:
        rpcs = src.rpcs
    with (
        rasterio.open(item["assets"]["data"]["href"]) as ortho,
        RPCTransformer(rpcs, RPC_HEIGHT=rpcs.height_off) as on_mean,
    ):
        for lon, lat in POINTS:
            value, expected = ortho_and_source_values(ortho, on_mean, lon, lat, 3, 3)
            assert abs(value - expected) < 6, (lon, lat, value, expected)
