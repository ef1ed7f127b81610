import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg
import pytest
import rasterio
from psycopg.types.json import Jsonb
from rasterio.transform import from_origin
from shapely.geometry import box, shape

from csdr_ingest.errors import MissingDatetime, NotGeoreferenced, SourceNotFound, SourceUnreadable
from csdr_ingest.pipeline import ingest_file
from csdr_ingest.replaced import delete_due

pytestmark = pytest.mark.slow  # seconds per test (scenes, apps): make test, not test-fast


@pytest.fixture
def conn(pg_env):
    with psycopg.connect(autocommit=True) as c:
        yield c


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


def test_publishes_item_with_assets_footprint_and_utc_datetime(scene, conn, settings):
    item = ingest_file(scene, conn, settings, collection="demo")
    assert item["properties"]["datetime"] == "2024-05-12T03:04:05Z"
    # an instant's interval, for harvesters that read only these (GEO DAB)
    assert (
        item["properties"]["start_datetime"]
        == item["properties"]["end_datetime"]
        == ("2024-05-12T03:04:05Z")
    )
    stored = conn.execute("SELECT pgstac.get_item(%s, %s)", (item["id"], "demo")).fetchone()[0]
    assert stored["id"] == "small_scene"
    for key in ("data", "thumbnail"):
        assert Path(stored["assets"][key]["href"]).is_file()
    bands = stored["assets"]["data"]["raster:bands"]
    assert len(bands) == 4 and bands[0]["nodata"] == 0 and bands[3]["statistics"]["maximum"] > 0
    assert [b["common_name"] for b in stored["assets"]["data"]["eo:bands"]] == [
        "blue",
        "green",
        "red",
        "nir",
    ]
    assert stored["properties"]["proj:epsg"] == 32650
    # The footprint excludes the nodata corners: clearly smaller than the raster's bounds.
    footprint = shape(stored["geometry"])
    bounds = box(*stored["bbox"])
    assert footprint.is_valid and 0.5 < footprint.area / bounds.area < 0.8
    collection = conn.execute("SELECT pgstac.get_collection('demo')").fetchone()[0]
    assert collection["extent"]["temporal"]["interval"][0][0].startswith("2024-05-12T03:04:05")


def test_reingest_replaces_files_of_the_old_version(scene, conn, settings):
    """The old version's files stay for the grace period (a tile that read the old item can
    still open them), then the next publish or sweep deletes them."""
    first = ingest_file(scene, conn, settings, collection="demo")
    second = ingest_file(scene, conn, settings, collection="demo")
    assert first["assets"]["data"]["href"] != second["assets"]["data"]["href"]
    versions = [sorted(Path(v["assets"][k]["href"]) for k in ("data", "thumbnail"))
                for v in (first, second)]  # fmt: skip
    assert files_under(settings.assets_dir) == sorted(versions[0] + versions[1])
    assert conn.execute("SELECT count(*) FROM pgstac.items").fetchone()[0] == 1
    due = conn.execute(
        "SELECT href, due_at - now() FROM csdr.replaced_files ORDER BY href"
    ).fetchall()
    assert [Path(h) for h, _ in due] == versions[0]
    assert all(119 < left.total_seconds() <= 120 for _, left in due)
    assert delete_due(conn, settings.store()) == 0  # not yet
    conn.execute("UPDATE csdr.replaced_files SET due_at = now()")
    assert delete_due(conn, settings.store()) == 2
    assert files_under(settings.assets_dir) == versions[1]
    assert conn.execute("SELECT count(*) FROM csdr.replaced_files").fetchone()[0] == 0


def test_without_a_grace_period_the_old_files_go_at_once(scene, conn, settings):
    settings.replaced_grace_s = 0
    ingest_file(scene, conn, settings, collection="demo")
    second = ingest_file(scene, conn, settings, collection="demo")
    assert files_under(settings.assets_dir) == sorted(
        Path(second["assets"][k]["href"]) for k in ("data", "thumbnail")
    )
    assert conn.execute("SELECT count(*) FROM csdr.replaced_files").fetchone()[0] == 0


def test_corrupt_tiff_is_rejected_and_leaves_nothing(scene, conn, settings, tmp_path):
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(scene.read_bytes()[:40_000])
    with pytest.raises(SourceUnreadable, match="corrupt.tif"):
        ingest_file(corrupt, conn, settings)
    assert conn.execute("SELECT count(*) FROM pgstac.items").fetchone()[0] == 0
    assert files_under(settings.assets_dir) == []


def test_not_a_raster_and_missing_file(conn, settings, tmp_path):
    text = tmp_path / "notes.tif"
    text.write_text("hello")
    with pytest.raises(SourceUnreadable, match="not a readable raster"):
        ingest_file(text, conn, settings)
    with pytest.raises(SourceNotFound, match="no such file"):
        ingest_file(tmp_path / "missing.tif", conn, settings)


def test_raster_without_crs_or_time_is_rejected(conn, settings, tmp_path):
    plain = tmp_path / "plain.tif"
    with rasterio.open(
        plain, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint16"
    ) as dst:
        dst.write(np.ones((1, 64, 64), dtype="uint16"))
    with pytest.raises(NotGeoreferenced, match="no CRS"):
        ingest_file(plain, conn, settings)
    timeless = tmp_path / "timeless.tif"
    with rasterio.open(
        timeless,
        "w",
        driver="GTiff",
        width=64,
        height=64,
        count=1,
        dtype="uint16",
        crs="EPSG:32650",
        transform=from_origin(660000, 4190000, 10, 10),
    ) as dst:
        dst.write(np.ones((1, 64, 64), dtype="uint16"))
    with pytest.raises(MissingDatetime, match="TIFFTAG_DATETIME"):
        ingest_file(timeless, conn, settings)
    item = ingest_file(timeless, conn, settings, when=datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert item["properties"]["datetime"] == "2023-01-02T03:04:05Z"


def test_database_failure_removes_the_written_files(scene, conn, settings):
    conn.execute("""
        CREATE FUNCTION pgstac.refuse() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'refused by test'; END $$;
        CREATE TRIGGER refuse BEFORE INSERT ON pgstac.items
            FOR EACH ROW EXECUTE FUNCTION pgstac.refuse();
    """)
    with pytest.raises(psycopg.Error, match="refused by test"):
        ingest_file(scene, conn, settings, collection="demo")
    assert files_under(settings.assets_dir) == []
    assert conn.execute("SELECT count(*) FROM pgstac.collections").fetchone()[0] == 0


def test_a_publish_that_loses_a_deadlock_is_published_again(scene, conn, settings, caplog):
    """A new partition locks `items` then `collections`; a writer that changed a collection
    and then reads items (federation's page) deadlocks with it. pgSTAC swallows the deadlock
    and fails on the missing partition; the publish runs again and the item is published."""
    for cid in ("fresh", "other"):
        conn.execute(
            "SELECT pgstac.create_collection(%s)",
            (Jsonb({"id": cid, "type": "Collection", "stac_version": "1.1.0", "description": cid,
                    "license": "proprietary", "links": [], "extent": {
                        "spatial": {"bbox": [[-180, -90, 180, 90]]},
                        "temporal": {"interval": [[None, None]]}}}),),
        )  # fmt: skip
    published: dict[str, object] = {}

    def ingest() -> None:
        with psycopg.connect(autocommit=True) as own:
            published["item"] = ingest_file(scene, own, settings, collection="fresh")

    with psycopg.connect() as other:  # a transaction: the collection row, then items
        other.execute("UPDATE pgstac.collections SET content = content WHERE id = 'other'")
        worker = threading.Thread(target=ingest)
        worker.start()
        deadline = time.monotonic() + 120
        while not conn.execute(
            "SELECT 1 FROM pg_locks WHERE NOT granted AND relation = 'pgstac.collections'::regclass"
        ).fetchone():
            assert worker.is_alive() and time.monotonic() < deadline, published
            time.sleep(0.02)
        # The publish holds `items` and waits for `collections`: reading items closes the cycle.
        other.execute("SELECT count(*) FROM pgstac.items").fetchone()
    worker.join(120)
    assert published["item"]["id"] == "small_scene"
    stored = conn.execute("SELECT pgstac.get_item('small_scene', 'fresh')").fetchone()[0]
    assert Path(stored["assets"]["data"]["href"]).is_file()
    assert "lost to a concurrent write" in caplog.text
