from pathlib import Path

import psycopg
import pytest

from csdr_access.admin import add_org, issue_key
from csdr_ingest.settings import Settings
from csdr_ingest.synthetic import DEMO_SCENES, Scene, write_scene

SMALL = Scene(**{**DEMO_SCENES[0].__dict__, "size": 1200, "name": "small_scene"})


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    """A 4-band uint16 GeoTIFF with nodata outside a rotated footprint."""
    return write_scene(SMALL, tmp_path)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(assets_dir=tmp_path / "assets")


@pytest.fixture
def ingest_key(pg_env: dict[str, str]) -> str:
    """A key with the ingest scope, of the node's own organisation."""
    with psycopg.connect(autocommit=True) as conn:
        add_org(conn, "Main node", "CN", "main", "test")
        return issue_key(conn, "Main node", ["ingest"], "test")[0]
