"""Elevation products end to end: a synthetic DEM with a known slope and aspect (and a hill)
ingested into a `-dem` collection, its tiles through the tiler's elevation presets held against
GDAL: `hillshade` against `gdaldem hillshade` of the same tile, `terrain-rgb` decoded back to
the heights, `point` answering the height in metres."""

from __future__ import annotations

import math
import subprocess
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import psycopg
import pytest
import rasterio
from fastapi.testclient import TestClient
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.warp import reproject
from rio_tiler.colormap import cmap

from conftest import TEMPLATE_DB
from csdr_ingest.errors import NotElevation
from csdr_ingest.pipeline import ingest_file
from csdr_ingest.settings import Settings as IngestSettings
from csdr_tiler.app import create_app
from csdr_tiler.settings import Settings
from services.tiler.tests.scenes import WEB_MERCATOR, Ingested, decode

UTM_50N = CRS.from_epsg(32650)
SIZE, PIXEL_M = 600, 30.0
WEST, NORTH = 440_000.0, 4_440_000.0  # near Beijing, 39.9 N
NODATA = -9999.0
# The plane: rises 0.25 m per metre to the east and 0.10 m per metre to the north.
EAST_SLOPE, NORTH_SLOPE, BASE_M = 0.25, 0.10, 500.0
Z = 12


def dem_heights() -> np.ndarray:
    """The plane plus a 300 m Gaussian hill, float32, nodata in the top-left corner."""
    rows, cols = np.mgrid[0:SIZE, 0:SIZE].astype("float64")
    east, north = cols * PIXEL_M, (SIZE - rows) * PIXEL_M
    heights = BASE_M + EAST_SLOPE * east + NORTH_SLOPE * north
    heights += 300 * np.exp(-(((cols - 380) ** 2 + (rows - 250) ** 2) / (2 * 60.0**2)))
    heights[:40, :40] = NODATA
    return heights.astype("float32")


def write_dem(path: Path) -> Path:
    profile = {
        "driver": "GTiff",
        "width": SIZE,
        "height": SIZE,
        "count": 1,
        "dtype": "float32",
        "crs": UTM_50N,
        "nodata": NODATA,
        "transform": from_origin(WEST, NORTH, PIXEL_M, PIXEL_M),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(dem_heights(), 1)
    return path


@pytest.fixture(scope="module")
def dem(pg_cluster, tmp_path_factory) -> Iterator[Ingested]:
    name = f"dem_{uuid.uuid4().hex[:8]}"
    pg_cluster.create_database(name, template=TEMPLATE_DB)
    directory = tmp_path_factory.mktemp("dem")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in pg_cluster.env(name).items():
            mp.setenv(key, value)
        with psycopg.connect(autocommit=True) as conn:
            source = write_dem(directory / "GF7_DEM_E116.3_N40.1.tif")
            settings = IngestSettings(assets_dir=directory / "assets")
            when = datetime(2023, 4, 2, 3, 0)
            item = ingest_file(source, conn, settings, collection="gf7-dem", when=when)
            collection = conn.execute("SELECT pgstac.get_collection('gf7-dem')").fetchone()[0]
        ingested = Ingested("gf7-dem", item, Path(item["assets"]["data"]["href"]))
        ingested.item["collection_doc"] = collection
        yield ingested
    with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def client(dem) -> Iterator[TestClient]:
    with TestClient(create_app(Settings())) as c:
        yield c


def test_dem_is_published_as_heights_in_metres_in_an_elevation_collection(dem):
    band = dem.item["assets"]["data"]["raster:bands"][0]
    heights = dem_heights()
    valid = heights[heights != NODATA]
    assert band["unit"] == "m" and band["nodata"] == NODATA and band["data_type"] == "float32"
    assert band["statistics"]["minimum"] == pytest.approx(float(valid.min()), abs=1)
    assert band["statistics"]["maximum"] == pytest.approx(float(valid.max()), abs=1)
    assert "eo:bands" not in dem.item["assets"]["data"]
    collection = dem.item["collection_doc"]
    assert collection["title"].startswith("Digital elevation model")
    assert collection["item_assets"]["data"]["raster:bands"] == [{"unit": "m"}]
    assert collection["renders"]["relief"]["colormap_name"] == "terrain"


def tile_of(dem: Ingested):
    west, south, east, north = dem.item["bbox"]
    return WEB_MERCATOR.tile((west + east) / 2, (south + north) / 2, Z)


def warped(dem: Ingested, tile, buffer: int = 0) -> np.ndarray:
    """The COG's heights on the tile's Web Mercator grid (nearest, as the tiler reads), with
    `buffer` extra pixels around it; NaN where there is no height."""
    left, bottom, right, top = WEB_MERCATOR.xy_bounds(tile)
    res = (right - left) / 256
    size = 256 + 2 * buffer
    out = np.full((size, size), np.nan, dtype="float32")
    with rasterio.open(dem.cog) as src:
        reproject(
            rasterio.band(src, 1),
            out,
            dst_transform=from_origin(left - buffer * res, top + buffer * res, res, res),
            dst_crs="EPSG:3857",
            dst_nodata=np.nan,
            resampling=Resampling.nearest,
        )
    return out


def gdaldem_hillshade(heights: np.ndarray, tile, tmp_path: Path) -> np.ndarray:
    """`gdaldem hillshade` (its defaults) of a 258 x 258 buffered tile grid, cropped to 256."""
    left, _, right, top = WEB_MERCATOR.xy_bounds(tile)
    res = (right - left) / 256
    source, shaded = tmp_path / "tile_dem.tif", tmp_path / "tile_hillshade.tif"
    profile = {
        "driver": "GTiff",
        "width": 258,
        "height": 258,
        "count": 1,
        "dtype": "float32",
        "crs": "EPSG:3857",
        "nodata": NODATA,
        "transform": from_origin(left - res, top + res, res, res),
    }
    with rasterio.open(source, "w", **profile) as dst:
        dst.write(np.where(np.isnan(heights), NODATA, heights).astype("float32"), 1)
    subprocess.run(["gdaldem", "hillshade", "-q", str(source), str(shaded)], check=True)
    with rasterio.open(shaded) as src:
        return src.read(1)[1:-1, 1:-1]


def preset_tile(client: TestClient, dem: Ingested, preset: str, tile) -> np.ndarray:
    r = client.get(
        f"{dem.url}/presets/{preset}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
    )
    assert r.status_code == 200, r.text
    return decode(r.content)


def test_hillshade_tile_is_gdaldem_hillshade_within_one_grey_level(client, dem, tmp_path):
    tile = tile_of(dem)
    ours = preset_tile(client, dem, "hillshade", tile)
    assert ours.shape == (2, 256, 256)  # grey + alpha
    reference = gdaldem_hillshade(warped(dem, tile, buffer=1), tile, tmp_path)
    both = (ours[1] > 0) & (reference > 0)
    assert both.mean() > 0.95
    difference = np.abs(ours[0].astype(int) - reference.astype(int))[both]
    assert (difference <= 1).mean() >= 0.99, np.bincount(difference)
    # The hill shows: the greys span tens of levels, not one flat plane's shade.
    assert np.ptp(ours[0][both]) > 25
    # On the plane, far from the hill, the grey is the plane's: Horn's slopes of a plane are its
    # gradient, scaled by Web Mercator's stretch at this latitude (gdaldem's default scale 1).
    stretch = 1 / math.cos(math.radians(39.9))
    x, y = -EAST_SLOPE / stretch, -NORTH_SLOPE / stretch
    alt, az = math.radians(45), math.radians(315)
    cang = (math.sin(alt) - (-y * math.cos(az) - x * math.sin(az)) * math.cos(alt)) / math.sqrt(
        1 + x * x + y * y
    )
    plane = 1 + 254 * cang
    assert abs(float(np.median(ours[0][both])) - plane) < 25


def test_terrain_rgb_tile_decodes_back_to_the_heights(client, dem):
    tile = tile_of(dem)
    rgb = preset_tile(client, dem, "terrain-rgb", tile).astype("float64")
    assert rgb.shape == (4, 256, 256)
    decoded = -10000 + (rgb[0] * 65536 + rgb[1] * 256 + rgb[2]) * 0.1
    heights = warped(dem, tile)
    valid = (rgb[3] > 0) & ~np.isnan(heights)
    assert valid.mean() > 0.95
    assert np.abs(decoded[valid] - heights[valid]).max() <= 0.1


def test_relief_is_the_terrain_ramp_stretched_over_the_stored_heights(client, dem):
    stats = dem.item["assets"]["data"]["raster:bands"][0]["statistics"]
    low, high = stats["minimum"], stats["maximum"]
    tile = tile_of(dem)
    ours = preset_tile(client, dem, "relief", tile)
    assert ours.shape == (4, 256, 256)
    heights = warped(dem, tile)
    valid = (ours[3] > 0) & ~np.isnan(heights)
    assert valid.mean() > 0.95
    level = np.clip((heights[valid] - low) * 255 / (high - low), 0, 255).astype("uint8")
    ramp = np.array([cmap.get("terrain")[i][:3] for i in range(256)])
    expected = ramp[level].T
    matches = np.all(np.abs(ours[:3, valid].astype(int) - expected) <= 1, axis=0)
    assert matches.mean() >= 0.99
    assert len(np.unique(level)) > 20


def test_point_answers_the_height_in_metres(client, dem):
    # The hill's top: column 380, row 250 of the DEM.
    east, north = WEST + 380.5 * PIXEL_M, NORTH - 250.5 * PIXEL_M
    [lon], [lat] = rasterio.warp.transform(UTM_50N, "EPSG:4326", [east], [north])
    r = client.get(f"{dem.url}/point/{lon},{lat}", params={"assets": "data"})
    assert r.status_code == 200, r.text
    [value] = r.json()["values"]
    expected = float(dem_heights()[250, 380])  # 500 + 0.25 * 11400 + 0.10 * 10500 + 300
    assert value == pytest.approx(expected, abs=1e-3) and expected == pytest.approx(4700)
    # The elevation presets' point answers the same height, not a shade or a colour.
    for preset in ("hillshade", "relief", "terrain-rgb"):
        r = client.get(f"{dem.url}/presets/{preset}/point/{lon},{lat}")
        assert r.status_code == 200, r.text
        assert r.json()["values"] == [pytest.approx(expected, abs=1e-3)], preset


def test_a_multiband_raster_is_refused_by_an_elevation_collection(dem, tmp_path, pg_env):
    path = tmp_path / "rgb.tif"
    profile = {
        "driver": "GTiff",
        "width": 8,
        "height": 8,
        "count": 3,
        "dtype": "uint8",
        "crs": UTM_50N,
        "transform": from_origin(WEST, NORTH, PIXEL_M, PIXEL_M),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.ones((3, 8, 8), dtype="uint8"))
    with psycopg.connect(autocommit=True) as conn, pytest.raises(NotElevation, match="3 bands"):
        ingest_file(
            path,
            conn,
            IngestSettings(assets_dir=tmp_path / "assets"),
            collection="zy3-dsm",
            when=datetime(2023, 1, 1),
        )


@pytest.mark.parametrize("preset", ["hillshade", "terrain-rgb", "relief"])
def test_the_collection_mosaic_draws_the_same_elevation_tiles(client, dem, preset):
    tile = tile_of(dem)
    path = f"presets/{preset}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
    mosaic = client.get(f"/collections/{dem.collection}/{path}")
    assert mosaic.status_code == 200, mosaic.text
    assert np.array_equal(decode(mosaic.content), preset_tile(client, dem, preset, tile))


@pytest.mark.parametrize("z", [6, 9])
def test_low_zoom_elevation_tiles_answer(client, dem, z):
    west, south, east, north = dem.item["bbox"]
    tile = WEB_MERCATOR.tile((west + east) / 2, (south + north) / 2, z)
    for base in (dem.url, f"/collections/{dem.collection}"):
        for preset in ("hillshade", "terrain-rgb", "relief"):
            url = f"{base}/presets/{preset}/tiles/WebMercatorQuad/{z}/{tile.x}/{tile.y}.png"
            r = client.get(url)
            assert r.status_code in (200, 204), (url, r.status_code, r.text)


def test_the_presets_raw_parameters_draw_the_same_tiles(client, dem):
    """A preset's titiler parameters (what a developer copies) give the preset's tile."""
    from urllib.parse import urlencode

    from csdr_render.presets import derive_presets

    tile = tile_of(dem)
    presets = derive_presets(dem.item["assets"])
    for name in ("hillshade", "terrain-rgb", "relief"):
        query = urlencode(presets[name].titiler_params())
        r = client.get(f"{dem.url}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png?{query}")
        assert r.status_code == 200, (name, r.text)
        assert np.array_equal(decode(r.content), preset_tile(client, dem, name, tile)), name
    listed = client.get("/algorithms")
    assert listed.status_code == 200
    assert "horn-hillshade" in [a["id"] for a in listed.json()["algorithms"]]
