from pathlib import Path

import pytest

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
