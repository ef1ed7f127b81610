"""The tiler's item cache: a re-ingested item's older version leaves the cache when its new
version is read, instead of holding a place until `items_max` newer versions push it out."""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg_pool import ConnectionPool

from csdr_ingest.pipeline import ingest_file
from csdr_ingest.settings import Settings as IngestSettings
from csdr_ingest.synthetic import DEMO_SCENES, Scene, write_scene
from csdr_tiler.items import Catalogue

SCENE = Scene(**{**DEMO_SCENES[0].__dict__, "size": 256, "name": "cached_scene"})


def test_a_new_version_replaces_the_older_ones_in_the_cache(pg_env, tmp_path: Path) -> None:
    source = write_scene(SCENE, tmp_path)
    settings = IngestSettings(assets_dir=tmp_path / "assets")
    with (
        psycopg.connect(autocommit=True) as conn,
        ConnectionPool(min_size=1, max_size=2, open=True) as pool,
    ):
        other = ingest_file(write_scene(Scene(**{**SCENE.__dict__, "name": "other"}), tmp_path),
                            conn, settings, "cache")  # fmt: skip
        ingest_file(source, conn, settings, "cache")
        catalogue = Catalogue(pool, items_max=64, collections_ttl_s=60)
        first = catalogue.item_version("cache", SCENE.name).version
        item = catalogue.item("cache", SCENE.name, first)
        catalogue.item_presets(item, first)
        kept = catalogue.item_version("cache", other["id"]).version
        catalogue.item("cache", other["id"], kept)

        ingest_file(source, conn, settings, "cache")  # a re-ingest: a new version
        second = catalogue.item_version("cache", SCENE.name).version
        assert second != first
        assert catalogue.cached_item("cache", SCENE.name, first) is not None  # until asked
        fresh = catalogue.item("cache", SCENE.name, second)
        catalogue.item_presets(fresh, second)

        assert catalogue.cached_item("cache", SCENE.name, first) is None
        assert catalogue.cached_item("cache", SCENE.name, second) is fresh
        assert ("presets", "cache", SCENE.name, first) not in catalogue._items
        assert ("presets", "cache", SCENE.name, second) in catalogue._items
        assert catalogue.cached_item("cache", other["id"], kept) is not None  # another item
