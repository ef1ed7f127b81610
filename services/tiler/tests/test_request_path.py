"""What an item tile request costs besides reading and encoding: how many times it hands work to
a worker thread (each hand-off is two thread switches and a wake-up of the event loop, and under
load a wait for the GIL each way), and the system calls of rasterio's environments around the
read (docs/performance.md, "Tiler: the item tile path")."""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any
from xml.etree import ElementTree

import anyio.to_thread
import pytest
import rasterio
from fastapi.testclient import TestClient

from csdr_tiler.app import create_app
from csdr_tiler.settings import Settings
from services.tiler.tests.scenes import Ingested

RAW = "assets=data%7Cbidx%3D3%2C2%2C1&rescale=600,2200"


@pytest.fixture(scope="module")
def client(db, pg_cluster) -> Iterator[TestClient]:
    with TestClient(create_app(Settings())) as c:
        yield c


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """The functions run in worker threads (FastAPI and Starlette hand off through anyio)."""
    counted: Counter[str] = Counter()
    run_sync = anyio.to_thread.run_sync

    async def counting(func: Any, *args: Any, **kwargs: Any) -> Any:
        counted[getattr(func, "__qualname__", repr(func))] += 1
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    return counted


@pytest.mark.parametrize("route", ["raw", "preset"])
def test_a_tile_of_a_cached_item_takes_two_thread_hops(
    client: TestClient, db: dict[str, Ingested], hops: Counter[str], route: str
) -> None:
    ms = db["ms"]
    tile = ms.centre_tile(13)
    where = f"WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
    url = (
        f"{ms.url}/tiles/{where}?{RAW}"
        if route == "raw"
        else f"{ms.url}/presets/true-color/tiles/{where}?"
    )
    assert client.get(url + "&n=0").status_code == 200  # the item and its presets cached
    hops.clear()
    r = client.get(url + "&n=1")  # another answer: not from the response cache
    assert r.status_code == 200 and r.content[:4] == b"\x89PNG"
    # The access decision (one database visit) and the read; titiler's eight parameter
    # dependencies are parsed on the event loop (csdr_tiler.dependencies.on_event_loop).
    assert sum(hops.values()) == 2, dict(hops)


def test_an_items_wmts_capabilities_take_two_thread_hops(
    client: TestClient, db: dict[str, Ingested], hops: Counter[str]
) -> None:
    url = f"{db['ms'].url}/presets/WMTSCapabilities.xml"
    assert client.get(url + "?n=0").status_code == 200
    hops.clear()
    r = client.get(url + "?n=1")
    assert r.status_code == 200
    # WMTS as the default namespace, whatever other documents this process wrote before.
    assert b"<Capabilities" in r.content[:200]
    assert ElementTree.fromstring(r.content).tag == "{http://www.opengis.net/wmts/1.0}Capabilities"
    # The access decision and the route; the item cache is reached on the event loop.
    assert sum(hops.values()) == 2, dict(hops)


def test_rasterio_environments_look_for_no_data_files_once_the_tiler_runs(pg_env, monkeypatch):
    for name in ("GDAL_DATA", "PROJ_DATA", "PROJ_LIB"):
        monkeypatch.delenv(name, raising=False)
    looked: list[str] = []
    exists = os.path.exists
    this_thread = threading.get_ident()

    def counting(path: Any) -> bool:
        if threading.get_ident() == this_thread:  # not another app's threads meanwhile
            looked.append(str(path))
        return exists(path)

    with TestClient(create_app(Settings())):
        monkeypatch.setattr(os.path, "exists", counting)
        # titiler's environment around a read, and rio-tiler's copy of it for the read.
        with rasterio.Env(), rasterio.Env():
            pass
    assert looked == []
    assert os.path.isdir(os.environ["GDAL_DATA"]) and os.path.isdir(os.environ["PROJ_DATA"])
