"""What the pyramid and search-layer tests share: two wide overlapping scenes, a module's
database, the closeness of pyramid pixels to scene pixels, and waiting for the refresher."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient
from httpx import Response

from conftest import TEMPLATE_DB
from csdr_ingest.synthetic import Scene
from csdr_tiler.settings import Settings

# Wide scenes (512 px of 600 m, ~300 km) so that a z5-z6 tile holds many of their pixels: two
# overlapping passes, B later (so on top).
A = Scene(
    "PYR_A", "EPSG:32650", 300_000, 4_400_000, datetime(2024, 5, 1, 3), seed=1, size=512, gsd=600.0
)
B = Scene(
    "PYR_B",
    "EPSG:32650",
    420_000,
    4_300_000,
    datetime(2024, 6, 1, 3),
    seed=2,
    size=512,
    gsd=600.0,
    rotation_deg=-9.0,
)
# A tiler whose registered searches have no low-zoom layer: their tiles are read from the scenes.
SCENES_ONLY = Settings(pyramid_refresh_s=0, search_layers_max=0)


@contextmanager
def module_database(pg_cluster, name: str) -> Iterator[str]:
    """A fresh migrated database `name` as the libpq environment until the block ends; its DSN."""
    pg_cluster.create_database(name, template=TEMPLATE_DB)
    mp = pytest.MonkeyPatch()
    for key, value in pg_cluster.env(name).items():
        mp.setenv(key, value)
    try:
        yield pg_cluster.conninfo(name)
    finally:
        mp.undo()
        with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def assert_close(got: np.ndarray, expected: np.ndarray) -> None:
    """Same footprint (alpha) and the same colours where both have data, up to resampling:
    the pyramid averages 2 x 2 blocks level by level, the scene read takes a COG overview."""
    both = (got[3] > 0) & (expected[3] > 0)
    assert both.sum() > 2000, "the tile shows the scenes"
    assert ((got[3] > 0) == (expected[3] > 0)).mean() > 0.97
    for band in range(3):
        g, e = got[band][both].astype(float), expected[band][both].astype(float)
        assert np.median(np.abs(g - e)) <= 4, band
        assert np.corrcoef(g, e)[0, 1] > 0.9, band


def wait_until_current(client: TestClient, path: str, timeout_s: float = 60) -> Response:
    """The tile once it is answered neither from stored tiles behind their generation nor
    from what is built so far (a 204 while nothing is)."""
    deadline = time.monotonic() + timeout_s
    while True:
        r = client.get(path)
        assert r.status_code in (200, 204), r.text
        if "x-csdr-pyramid" not in r.headers:
            assert r.status_code == 200 and "must-revalidate" not in r.headers["cache-control"]
            return r
        assert time.monotonic() < deadline, "the refresher never caught up"
        time.sleep(0.2)


def centre_lon_lat(scene: Scene) -> tuple[float, float]:
    """A synthetic scene's centre in longitude and latitude."""
    from pyproj import Transformer

    half = scene.size * scene.gsd / 2
    to_lonlat = Transformer.from_crs(scene.crs, "EPSG:4326", always_xy=True)
    return to_lonlat.transform(scene.west + half, scene.north - half)
