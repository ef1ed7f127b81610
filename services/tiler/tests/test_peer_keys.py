"""A peer's key goes to GDAL for reads under that peer's STAC API only: not to another path, not
to another port of the same host; a removed peer's key is no longer sent."""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
import rasterio
from psycopg_pool import ConnectionPool
from rasterio.transform import from_origin
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from csdr_tiler.peer_keys import PeerKeys
from tests.support.servers import served

KEY = "csdr_0000feed_the-key-main-issued-to-this-node"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[tuple]]]:
    """Serves one small GeoTIFF at any path; records (path, X-API-Key) of each request."""
    path = Path(tmp_path_factory.mktemp("peer")) / "scene.tif"
    profile = {"driver": "GTiff", "width": 32, "height": 32, "count": 1, "dtype": "uint8"}
    with rasterio.open(path, "w", crs="EPSG:4326", transform=from_origin(0, 1, 0.01, 0.01),
                       **profile) as dst:  # fmt: skip
        dst.write(np.full((1, 32, 32), 7, "uint8"))
    seen: list[tuple] = []

    async def asset(request: Request) -> Response:
        seen.append((request.url.path, request.headers.get("x-api-key")))
        return FileResponse(path)

    with served(Starlette(routes=[Route("/{rest:path}", asset, methods=["GET", "HEAD"])])) as url:
        yield url, seen


def keys_sent(seen: list[tuple], path: str) -> set:
    return {key for p, key in seen if p == path}


def test_the_key_goes_under_the_peers_api_only(pg_env, server) -> None:
    url, seen = server
    with psycopg.connect(autocommit=True) as conn:
        conn.execute(
            "INSERT INTO csdr.federation_peers (name, url, api_key, catalog_url)"
            " VALUES ('main', 'http://127.0.0.1:9', %s, %s)",
            (KEY, f"{url}/stac"),
        )
    with ConnectionPool(min_size=1, max_size=1, open=True) as pool:
        keys = PeerKeys(pool)
        assert keys.refresh() == 1 and keys.refresh() == 0
        with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
            for sub in ("stac/a.tif", "stacx/b.tif", "other/c.tif"):
                with rasterio.open(f"{url}/{sub}") as src:
                    assert src.read().max() == 7
            assert keys_sent(seen, "/stac/a.tif") == {KEY}
            assert keys_sent(seen, "/stacx/b.tif") == {None}
            assert keys_sent(seen, "/other/c.tif") == {None}
            with psycopg.connect(autocommit=True) as conn:
                conn.execute("UPDATE csdr.federation_peers SET status = 'paused'")
            assert keys.refresh() == 1
            with rasterio.open(f"{url}/stac/d.tif") as src:
                assert src.read().max() == 7
            assert keys_sent(seen, "/stac/d.tif") == {None}
            keys.clear()
