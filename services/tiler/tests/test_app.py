"""The tiler against a real pgSTAC database and a real COG: what a map user would check."""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import morecantile
import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient
from owslib.wmts import WebMapTileService
from psycopg.types.json import Jsonb
from rasterio.io import MemoryFile
from rasterio.transform import from_origin
from rasterio.warp import transform as transform_coords
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles
from rio_stac import create_stac_item

from csdr_tiler.app import create_app
from csdr_tiler.settings import Settings
from services.tiler.tests.scenes import decode, source_pixels

pytestmark = pytest.mark.slow  # seconds per test (scenes, apps): make test, not test-fast

# A GF-2-like 4-band scene (4 m, UTM 50N) on the Yellow River delta; the z15 tile around its
# centre (~3.8 m pixels) lies wholly inside it.
LON, LAT = 118.9, 37.7
UTM = "EPSG:32650"
SIZE_PX, PIXEL_M = 1024, 4.0
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
TILE = WEB_MERCATOR.tile(LON, LAT, 15)
RGB = "data|bidx=3,2,1"  # titiler 2.x: options after `|`; `asset_bidx` is ignored
RGB_8_BIT = {"assets": RGB, "rescale": "0,4000"}


@dataclass
class Scene:
    """A COG loaded into pgSTAC as one item of one collection."""

    path: Path
    collection_id: str
    item_id: str

    @property
    def item_url(self) -> str:
        return f"/collections/{self.collection_id}/items/{self.item_id}"


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Blurred white noise of unit variance: smooth, textured, periodic only over the image."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    blur = np.exp(-2 * (np.pi * sigma_px) ** 2 * (fx**2 + fy**2))
    field = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal(shape)) * blur))
    return (field - field.mean()) / field.std()


def write_cog(path: Path) -> None:
    """Four independent uint16 bands (1..4000, nodata 0) in UTM 50N, as a deflate COG."""
    rng = np.random.default_rng(20240601)
    bands = [2000 + 600 * smooth_noise(rng, (SIZE_PX, SIZE_PX), 6) for _ in range(4)]
    data = np.clip(np.stack(bands), 1, 4000).astype("uint16")
    (x,), (y,) = transform_coords("EPSG:4326", UTM, [LON], [LAT])
    half = SIZE_PX * PIXEL_M / 2
    profile = {
        "driver": "GTiff",
        "dtype": "uint16",
        "count": 4,
        "width": SIZE_PX,
        "height": SIZE_PX,
        "crs": UTM,
        "transform": from_origin(x - half, y + half, PIXEL_M, PIXEL_M),
        "nodata": 0,
    }
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(data)
        with mem.open() as src:
            cog_translate(src, path, cog_profiles.get("deflate"), quiet=True)


def load_scene(path: Path) -> Scene:
    """Create a collection and upsert the COG's STAC item with pgSTAC's own SQL functions."""
    # Ids unique per test: titiler-pgstac caches items and collection searches per process by
    # id (5 min TTL), not per database, and every test has a fresh database.
    suffix = uuid.uuid4().hex[:8]
    scene = Scene(path, f"gf2-pms-{suffix}", f"GF2_PMS1_E118.9_N37.7_{suffix}")
    item = create_stac_item(
        str(path),
        input_datetime=datetime(2024, 6, 1, 3, 0, tzinfo=UTC),
        id=scene.item_id,
        collection=scene.collection_id,
        asset_name="data",
        asset_href=str(path),
        asset_roles=["data"],
        with_proj=True,
        with_raster=True,
        with_eo=True,
    ).to_dict()
    collection = {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": scene.collection_id,
        "description": "GF-2 PMS look-alike",
        "license": "other",
        "links": [],
        "extent": {
            "spatial": {"bbox": [item["bbox"]]},
            "temporal": {"interval": [["2024-06-01T00:00:00Z", None]]},
        },
    }
    with psycopg.connect(options="-c search_path=pgstac,public", autocommit=True) as conn:
        conn.execute("SELECT pgstac.create_collection(%s)", (Jsonb(collection),))
        conn.execute("SELECT pgstac.upsert_item(%s)", (Jsonb(item),))
    return scene


@pytest.fixture(scope="module")
def cog(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("assets") / "scene.tif"
    write_cog(path)
    return path


@pytest.fixture
def scene(pg_env, cog) -> Scene:
    return load_scene(cog)


@pytest.fixture
def client(pg_env):
    with TestClient(create_app(Settings())) as c:
        yield c


def tile_path(tile: morecantile.Tile) -> str:
    return f"tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"


def assert_same_image(got: np.ndarray, expected: np.ndarray) -> None:
    """Band by band, `got` is `expected` up to resampling: small median error, high correlation.

    Measured here: same image 0-5 % of a band's std and r > 0.997; another band ~95 % and r ~ 0;
    the right band shifted by 1.5 source pixels 10-23 % and r < 0.99.
    """
    assert got.shape == expected.shape
    for i, (g, e) in enumerate(zip(got.astype("float64"), expected, strict=True)):
        median_error = np.median(np.abs(g - e))
        correlation = np.corrcoef(g.ravel(), e.ravel())[0, 1]
        assert median_error <= 0.07 * e.std(), (i, median_error, e.std())
        assert correlation > 0.99, (i, correlation)


def rescaled(values: np.ndarray) -> np.ndarray:
    """`values` as titiler's `rescale=0,4000` renders them into a uint8 image."""
    return np.clip(values * 255 / 4000, 0, 255)


def test_item_tile_has_the_scene_pixels_in_16_bit(client, scene):
    r = client.get(f"{scene.item_url}/{tile_path(TILE)}", params={"assets": RGB})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    # Ingested a moment ago: the shortest max-age (a fresh scene may be re-ingested soon).
    assert r.headers["cache-control"] == "public, max-age=60, stale-while-revalidate=3600"
    assert r.headers["last-modified"]
    img = decode(r.content)
    assert img.dtype == np.uint16 and img.shape == (4, 256, 256)
    assert img[3].min() > 0, "the tile lies inside the scene: no pixel may be transparent"
    assert_same_image(img[:3], source_pixels(scene.path, TILE, [3, 2, 1], 256))


def test_item_tile_rescaled_to_8_bit(client, scene):
    r = client.get(f"{scene.item_url}/{tile_path(TILE)}", params=RGB_8_BIT)
    assert r.status_code == 200, r.text
    img = decode(r.content)
    assert img.dtype == np.uint8 and img.shape == (4, 256, 256)
    assert_same_image(img[:3], rescaled(source_pixels(scene.path, TILE, [3, 2, 1], 256)))


def test_item_tilejson_lists_tile_urls_that_answer(client, scene):
    r = client.get(f"{scene.item_url}/WebMercatorQuad/tilejson.json", params=RGB_8_BIT)
    assert r.status_code == 200, r.text
    tilejson = r.json()
    west, south, east, north = tilejson["bounds"]
    assert west < LON < east and south < LAT < north
    assert tilejson["minzoom"] <= TILE.z <= tilejson["maxzoom"]
    (template,) = tilejson["tiles"]
    url = template.replace("{z}", str(TILE.z)).replace("{x}", str(TILE.x))
    url = url.replace("{y}", str(TILE.y))
    tile = client.get(url)
    assert tile.status_code == 200, tile.text
    img = decode(tile.content)  # TileJSON asks for 512 px tiles
    assert_same_image(img[:3], rescaled(source_pixels(scene.path, TILE, [3, 2, 1], 512)))


def test_item_wmts_capabilities_parse_and_their_template_answers(client, scene):
    r = client.get(f"{scene.item_url}/WMTSCapabilities.xml", params=RGB_8_BIT)
    assert r.status_code == 200, r.text
    wmts = WebMapTileService(str(r.url), xml=r.content)
    layer = next(
        layer for layer in wmts.contents.values() if "WebMercatorQuad" in layer.tilematrixsetlinks
    )
    limits = layer.tilematrixsetlinks["WebMercatorQuad"].tilematrixlimits[str(TILE.z)]
    assert limits.mintilecol <= TILE.x <= limits.maxtilecol
    assert limits.mintilerow <= TILE.y <= limits.maxtilerow
    template = layer.resourceURLs[0]["template"]
    url = template.replace("{TileMatrix}", str(TILE.z)).replace("{TileCol}", str(TILE.x))
    url = url.replace("{TileRow}", str(TILE.y))
    tile = client.get(url)
    assert tile.status_code == 200, tile.text
    assert tile.headers["content-type"] == "image/png"
    img = decode(tile.content)
    assert_same_image(img[:3], rescaled(source_pixels(scene.path, TILE, [3, 2, 1], 256)))


def test_registered_search_serves_a_mosaic_tile(client, scene):
    r = client.post("/searches/register", json={"collections": [scene.collection_id]})
    assert r.status_code == 200, r.text
    search = r.json()
    assert any(link["rel"] == "tilejson" for link in search["links"])
    tile = client.get(f"/searches/{search['id']}/{tile_path(TILE)}", params={"assets": RGB})
    assert tile.status_code == 200, tile.text
    assert_same_image(decode(tile.content)[:3], source_pixels(scene.path, TILE, [3, 2, 1], 256))
    # Where the search has no scene, a mosaic answers 204 (QGIS draws nothing), not an error.
    far = WEB_MERCATOR.tile(10.0, 50.0, 15)
    empty = client.get(f"/searches/{search['id']}/{tile_path(far)}", params={"assets": RGB})
    assert empty.status_code == 204


def test_collection_serves_a_mosaic_tile(client, scene):
    r = client.get(f"/collections/{scene.collection_id}/{tile_path(TILE)}", params={"assets": RGB})
    assert r.status_code == 200, r.text
    assert_same_image(decode(r.content)[:3], source_pixels(scene.path, TILE, [3, 2, 1], 256))


def test_unknown_item_collection_and_search_are_404(client, scene):
    params = {"assets": RGB}
    missing_item = f"/collections/{scene.collection_id}/items/nope/{tile_path(TILE)}"
    assert client.get(missing_item, params=params).status_code == 404
    missing_collection = f"/collections/nope-{uuid.uuid4().hex[:8]}/{tile_path(TILE)}"
    assert client.get(missing_collection, params=params).status_code == 404
    assert client.get(f"/searches/{'0' * 32}/{tile_path(TILE)}", params=params).status_code == 404


def test_api_names_the_node(client):
    info = client.get("/api").json()["info"]
    assert "CSDR Node" in info["title"]


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["pgstac"]
    assert "cache-control" not in ready.headers


def test_readiness_is_503_when_database_is_gone(client, pg_cluster, pg_env):
    with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{pg_env["PGDATABASE"]}" WITH (FORCE)')
    assert client.get("/healthz").status_code == 200
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json() == {"status": "unavailable", "database": "unreachable"}


def test_cors_origins_are_configurable(pg_env, monkeypatch):
    monkeypatch.setenv("CSDR_TILER_CORS_ORIGINS", "https://portal.example.org,https://qgis.example")
    with TestClient(create_app()) as c:
        r = c.get("/healthz", headers={"Origin": "https://qgis.example"})
        assert r.headers["access-control-allow-origin"] == "https://qgis.example"
        r = c.get("/healthz", headers={"Origin": "https://evil.example.com"})
        assert "access-control-allow-origin" not in r.headers


def test_a_tiles_assets_route_checks_its_zoom_like_the_tile_routes(client, scene):
    tile = "tiles/WebMercatorQuad/44651299/2764/45925945/assets"
    r = client.get(f"/collections/{scene.collection_id}/{tile}")
    assert r.status_code == 400, r.text
    assert "outside WebMercatorQuad's levels" in r.json()["detail"]
