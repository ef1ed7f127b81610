"""Reading items: what an item reader derives from the item is kept per item object and tile
matrix set (the same as titiler-pgstac's reader derives), and a band the asset lacks is a 400
(InvalidBandName), not rasterio's IndexError; the memoized coordinate work answers as rasterio."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import rio_tiler.utils
from morecantile import tms as morecantile_tms
from rasterio import warp
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rio_tiler.errors import InvalidBandName
from titiler.pgstac.reader import PgSTACReader

from csdr_tiler import first_uses
from csdr_tiler.datasets import (
    DERIVED,
    REMEMBERED,
    CrsKey,
    ItemReader,
    PyramidSceneReader,
    ReaderPool,
    SceneReader,
    _authority_of,
    _bounds_in,
    _native_grid,
    _remembered_bounds,
    _remembered_grid,
    remember_transforms,
)
from services.tiler.tests.scenes import Ingested

pytestmark = pytest.mark.slow  # seconds per test (scenes, apps): make test, not test-fast

MATRIX_SETS = ("WebMercatorQuad", "WorldCRS84Quad")


def test_an_item_readers_derived_values_are_titiler_pgstacs_per_matrix_set(db):
    ms: Ingested = db["ms"]
    item = pystac.Item.from_dict(ms.item)
    for _ in range(2):  # made, then kept
        for name in MATRIX_SETS:
            tms = morecantile_tms.get(name)
            with ItemReader(item, tms=tms) as ours, PgSTACReader(item, tms=tms) as theirs:
                for attribute in DERIVED:
                    assert getattr(ours, attribute) == getattr(theirs, attribute), attribute
                assert ours.item is item
    web, crs84 = (ItemReader(item, tms=morecantile_tms.get(n)) for n in MATRIX_SETS)
    assert (web.minzoom, web.maxzoom) != (crs84.minzoom, crs84.maxzoom)
    # Another object of the item (a new version from the cache) derives its own.
    again = pystac.Item.from_dict({**ms.item, "assets": {}})
    with pytest.raises(Exception, match="No valid asset"):
        ItemReader(again)


def test_a_band_the_asset_lacks_is_a_client_error(db):
    ms: Ingested = db["ms"]
    with ItemReader(pystac.Item.from_dict(ms.item)) as reader:
        tile = ms.centre_tile(13)
        assert reader.tile(tile.x, tile.y, tile.z, assets=[{"name": "data", "indexes": [4]}])
        for read in (
            lambda: reader.tile(tile.x, tile.y, tile.z, assets=[{"name": "data", "indexes": [5]}]),
            lambda: reader.preview(assets=[{"name": "data", "indexes": [0]}], max_size=32),
            lambda: reader.point(*ms.item["bbox"][:2], assets=[{"name": "data", "indexes": [9]}]),
        ):
            with pytest.raises(InvalidBandName, match="the asset has bands 1 to 4"):
                read()


def test_remembered_transforms_answer_as_rasterio_does():
    utm, mercator = CRS.from_epsg(32650), CRS.from_epsg(3857)
    bounds = (662000.0, 4177712.0, 674288.0, 4190000.0)
    for _ in range(2):  # computed, then remembered
        for src, dst in ((utm, mercator), (CRS.from_epsg(32650), "EPSG:4326")):
            assert _remembered_bounds(src, dst, *bounds, densify_pts=21) == (
                warp.transform_bounds(src, dst, *bounds, densify_pts=21)
            )
            assert _remembered_grid(src, dst, 1536, 1536, *bounds) == (
                warp.calculate_default_transform(src, dst, 1536, 1536, *bounds)
            )
    # Equal CRSs are one key, whichever object; different ones are not.
    assert CrsKey(utm) == CrsKey(CRS.from_epsg(32650)) and hash(CrsKey(utm)) == hash(utm)
    assert CrsKey(utm) != CrsKey(mercator)
    # Unhashable arguments are computed afresh, not refused.
    wkt = {"init": "epsg:3857"}
    assert _remembered_bounds(utm, wkt, *bounds) == warp.transform_bounds(utm, wkt, *bounds)


def test_rio_tiler_calls_each_name_remember_transforms_replaces(db):  # noqa: F811
    # An upgrade of rio-tiler that renames, moves or stops calling one of these through its
    # module (`from rasterio.warp import ...` inside a function, say) fails here.
    remember_transforms()
    remember_transforms()  # again: nothing changes
    for module, name, ours in REMEMBERED:
        assert getattr(module, name) is ours, f"{module.__name__}.{name}"
    before = [f.cache_info() for f in (_native_grid, _bounds_in, _authority_of)]
    ms: Ingested = db["ms"]
    with ItemReader(pystac.Item.from_dict(ms.item)) as reader:
        tile = ms.centre_tile(13)
        reader.tile(tile.x, tile.y, tile.z, assets=["data"])
    assert rio_tiler.utils.CRS_to_uri(CRS.from_epsg(3857)).endswith("/EPSG/0/3857")
    after = [f.cache_info() for f in (_native_grid, _bounds_in, _authority_of)]
    for name, b, a in zip(("grid", "bounds", "authority"), before, after, strict=True):
        assert a.hits + a.misses > b.hits + b.misses, f"rio-tiler no longer asks for the {name}"


def test_patches_are_applied_by_the_lifespan_not_by_import_or_create_app():
    # A fresh interpreter: another test may already have run a lifespan in this one.
    script = textwrap.dedent(
        """
        import rasterio.warp, rio_tiler.io.base, rio_tiler.utils
        from csdr_tiler.app import create_app
        from csdr_tiler.settings import Settings
        from csdr_tiler.datasets import POOL, REMEMBERED
        create_app(Settings(open_datasets=7))
        assert rio_tiler.utils.calculate_default_transform is (
            rasterio.warp.calculate_default_transform
        )
        assert all(getattr(m, n) is not ours for m, n, ours in REMEMBERED)
        assert POOL.max_idle != 7
        print("untouched")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "untouched" in done.stdout, done.stderr[-2000:]


def test_a_name_rio_tiler_no_longer_has_fails_the_start(monkeypatch):
    monkeypatch.delattr(rio_tiler.utils, "_CRS_authority_info")
    with pytest.raises(RuntimeError, match="rio_tiler.utils._CRS_authority_info"):
        remember_transforms()


def test_pixel_reads_note_a_use_of_their_asset_and_info_does_not(db, monkeypatch):
    """Lazily mirrored assets are copied on first use (csdr_storage.lazy): every pixel read of
    an item (or of a mosaic's scene) resolves its asset through rio-tiler's `_get_asset_info`,
    which notes the href; an info (headers only) notes nothing (docs/upstream.md)."""
    ms: Ingested = db["ms"]
    noted: list[str] = []
    monkeypatch.setattr(first_uses.USES, "note", noted.append)
    href = ms.item["assets"]["data"]["href"]
    with ItemReader(pystac.Item.from_dict(ms.item)) as reader:
        reader.info(assets=["data"])
        assert noted == []
        tile = ms.centre_tile(13)
        reader.tile(tile.x, tile.y, tile.z, assets=["data"])
        assert noted == [href]
        reader.preview(assets=["data"], max_size=32)
        west, south, east, north = ms.item["bbox"]
        reader.point((west + east) / 2, (south + north) / 2, assets=["data"])
        reader.statistics(assets=["data"], max_size=32)
        assert noted == [href] * 4
    # A scene of a mosaic a request draws is used; the pyramid's background renders are not.
    noted.clear()
    with SceneReader(ms.item) as scene:
        scene.tile(tile.x, tile.y, tile.z, assets=["data"])
    with PyramidSceneReader(ms.item) as scene:
        scene.tile(tile.x, tile.y, tile.z, assets=["data"])
    assert noted == [href]


def write_raster(path: Path, value: int) -> str:
    """A small georeferenced single-band GeoTIFF at `path` (replacing any file there)."""
    transform = from_origin(662_000, 4_190_000, 10, 10)
    profile = {"driver": "GTiff", "width": 64, "height": 64, "count": 1, "dtype": "uint8",
               "crs": "EPSG:32650", "transform": transform}  # fmt: skip
    tmp = path.with_suffix(".tmp")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(np.full((1, 64, 64), value, dtype="uint8"))
    tmp.replace(path)  # a new file (inode) under the name, as a copy into place would be
    return str(path)


def test_readers_of_replaced_or_removed_files_are_closed_at_the_next_sweep(tmp_path: Path):
    tms = morecantile_tms.get("WebMercatorQuad")
    pool = ReaderPool(max_idle=8, sweep_every_s=3600)
    kept, removed, replaced = (write_raster(tmp_path / f"{n}.tif", 1) for n in "abc")
    opened = {}
    for url in (kept, removed, replaced):
        with pool.lend(url, tms) as reader:
            opened[url] = reader
    assert pool.idle() == 3 and pool.sweep() == 0  # nothing changed: all kept open

    Path(removed).unlink()  # a re-ingest deleted the version it replaced
    write_raster(Path(replaced), 2)  # another file under the same name
    assert pool.sweep() == 2
    assert pool.idle() == 1
    assert opened[removed].dataset.closed and opened[replaced].dataset.closed
    assert not opened[kept].dataset.closed
    with pool.lend(kept, tms) as reader:
        assert reader is opened[kept]  # the kept one is still lent again
    with pool.lend(replaced, tms) as reader:
        assert reader is not opened[replaced]
        assert reader.dataset.read(1)[0, 0] == 2


def test_a_reader_given_back_sweeps_once_the_interval_passed(tmp_path: Path):
    tms = morecantile_tms.get("WebMercatorQuad")
    pool = ReaderPool(max_idle=8, sweep_every_s=0)  # every give-back sweeps
    old, other = write_raster(tmp_path / "old.tif", 1), write_raster(tmp_path / "new.tif", 1)
    with pool.lend(old, tms) as stale:
        pass
    Path(old).unlink()
    with pool.lend(other, tms):
        pass
    assert stale.dataset.closed and pool.idle() == 1


@pytest.mark.parametrize("at_once", [1, 2, 0])
def test_reads_of_local_files_take_turns_within_the_bound(tmp_path: Path, at_once: int):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    tms = morecantile_tms.get("WebMercatorQuad")
    pool = ReaderPool(max_idle=8)
    pool.bound_local_reads(at_once)
    url = write_raster(tmp_path / "a.tif", 1)
    lock, reading, most = threading.Lock(), [0], [0]
    entered, done = threading.Semaphore(0), threading.Event()

    def read(_: int) -> None:
        with pool.lend(url, tms):
            with lock:
                reading[0] += 1
                most[0] = max(most[0], reading[0])
            entered.release()
            done.wait(30)
            with lock:
                reading[0] -= 1

    expected = at_once or 6  # 0: no bound, all six threads read at once
    with ThreadPoolExecutor(6) as threads:
        reads = [threads.submit(read, i) for i in range(6)]
        assert all(entered.acquire(timeout=30) for _ in range(expected))
        assert not entered.acquire(timeout=0.3)  # nobody else gets in while they read
        done.set()
        for r in reads:
            r.result()
    assert most[0] == expected
