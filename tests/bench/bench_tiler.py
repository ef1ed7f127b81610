"""Item tiles: our tiler (`csdr_tiler`) against stock `titiler.pgstac.main:app`, both as real
uvicorn processes over one fresh database holding the demo scenes ingested as real COGs. The same
distinct z12-z14 tiles go to each at 8 concurrent clients, after a warm-up pass over other tiles
(z11, z15), so that no measured tile is in our response cache unless the pass says "hot". Also:
our p50 against the in-process floor (rio-tiler reading and encoding the same tiles, no HTTP), and
the preset WMTS capabilities against titiler's. Prints ratios; asserts only equal images."""

import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import morecantile
import numpy as np
import psycopg
import pytest
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from conftest import free_port
from csdr_ingest.pipeline import ingest_file
from csdr_ingest.settings import Settings
from csdr_ingest.synthetic import write_demo_scenes
from csdr_render.presets import derive_presets
from tests.e2e.processes import service

COLLECTION = "bench"
ZOOMS = [12, 13, 14]
WARM_UP_ZOOMS = [11, 15]
PRESET = "true-color"
CLIENTS = 8
PASS_TIMEOUT_S = 120
# True colour: red, green, blue = bands 3, 2, 1 of the 4-band asset (`data|bidx=3,2,1`, encoded).
QUERY = "assets=data%7Cbidx%3D3%2C2%2C1&rescale=600,2200"
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")


@dataclass
class Run:
    """One pass over every tile: per-tile latency and body, and the pass's wall time."""

    seconds: list[float]
    bodies: list[bytes]
    wall_s: float

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.seconds, q)) * 1000

    @property
    def tiles_per_s(self) -> float:
        return len(self.seconds) / self.wall_s


@pytest.fixture
def items(pg_env: dict[str, str], tmp_path: Path) -> list[dict]:
    """The demo scenes ingested as real COGs and items."""
    settings = Settings(assets_dir=tmp_path / "assets")
    with psycopg.connect(autocommit=True) as conn:
        return [
            ingest_file(scene, conn, settings, collection=COLLECTION)
            for scene in write_demo_scenes(tmp_path / "scenes")
        ]


def raw_paths(items: list[dict], zooms: list[int], query: str = QUERY) -> list[str]:
    """Distinct tile paths over each item's bbox with titiler's raw query parameters."""
    return [
        f"/collections/{COLLECTION}/items/{item['id']}/tiles/WebMercatorQuad/"
        f"{t.z}/{t.x}/{t.y}.png?{query}"
        for item in items
        for t in WEB_MERCATOR.tiles(*item["bbox"], zooms=zooms)
    ]


def preset_paths(items: list[dict], zooms: list[int]) -> list[str]:
    """The same tiles through our preset route."""
    return [
        f"/collections/{COLLECTION}/items/{item['id']}/presets/{PRESET}/tiles/WebMercatorQuad/"
        f"{t.z}/{t.x}/{t.y}.png"
        for item in items
        for t in WEB_MERCATOR.tiles(*item["bbox"], zooms=zooms)
    ]


def preset_query(item: dict) -> str:
    """The preset's rendering as raw titiler parameters, for the stock tiler."""
    return urlencode(derive_presets(item["assets"])[PRESET].titiler_params())


@pytest.fixture
def tile_paths(items: list[dict]) -> list[str]:
    return raw_paths(items, ZOOMS)


@pytest.fixture
def tilers(pg_env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    """Both tilers running on the same database: name -> base URL."""
    with ExitStack() as stack:
        yield {
            "ours": stack.enter_context(
                service("csdr_tiler.app:create_app", free_port(), pg_env, tmp_path)
            ),
            "stock": stack.enter_context(
                service(
                    "tests.bench.stock_tiler:create_app",
                    free_port(),
                    pg_env,
                    tmp_path,
                    ready_path="/healthz",
                )
            ),
        }


def fire(base: str, paths: list[str], clients: int = CLIENTS) -> Run:
    """GET every path from CLIENTS threads sharing a keep-alive pool; check each is a 200 PNG."""
    deadline = time.monotonic() + PASS_TIMEOUT_S
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    with httpx.Client(base_url=base, limits=limits, timeout=30) as client:

        def get(path: str) -> tuple[float, bytes]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"pass over {len(paths)} tiles took over {PASS_TIMEOUT_S} s")
            start = time.perf_counter()
            r = client.get(path)
            elapsed = time.perf_counter() - start
            assert r.status_code == 200, f"{base}{path}: {r.status_code} {r.text[:300]}"
            if ".xml" in path:
                assert b"<Capabilities" in r.content[:200]
            else:
                assert r.headers["content-type"] == "image/png" and r.content[:4] == b"\x89PNG"
            return elapsed, r.content

        with ThreadPoolExecutor(clients) as pool:
            start = time.perf_counter()
            results = list(pool.map(get, paths))
            wall_s = time.perf_counter() - start
    return Run([s for s, _ in results], [b for _, b in results], wall_s)


def decode(png: bytes) -> np.ndarray:
    """A PNG's bands, alpha last."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile(png) as mem, mem.open() as img:
            return img.read()


def test_item_tiles_ours_vs_stock_titiler_pgstac(
    items: list[dict], tile_paths: list[str], tilers: dict[str, str]
) -> None:
    for base in tilers.values():
        # warm-up on other tiles: imports, connection pool, GDAL caches, not our tile cache
        fire(base, raw_paths(items, WARM_UP_ZOOMS))
    runs = {name: fire(base, tile_paths) for name, base in tilers.items()}

    ours, stock = runs["ours"], runs["stock"]
    same_bytes = 0
    with_data = 0
    for a, b in zip(ours.bodies, stock.bodies, strict=True):
        pixels = decode(a)
        with_data += bool(pixels[-1].any())
        if a == b:
            same_bytes += 1
        else:
            diff = np.abs(pixels.astype("int32") - decode(b).astype("int32"))
            assert diff.max() <= 1, f"tiles differ by up to {diff.max()}"
    # Equal images prove nothing if both are empty: most tiles must show the scene.
    assert with_data > len(tile_paths) / 2

    print(
        f"\nItem tiles: {len(tile_paths)} distinct z{ZOOMS[0]}-z{ZOOMS[-1]} PNG tiles, "
        f"{CLIENTS} concurrent clients, after a warm-up pass; "
        f"{same_bytes}/{len(tile_paths)} byte-identical, {with_data} with data"
    )
    print(f"{'tiler':<24}{'p50 ms':>8}{'p95 ms':>8}{'tiles/s':>9}")
    for name, run in (("ours (csdr_tiler)", ours), ("stock titiler-pgstac", stock)):
        print(
            f"{name:<24}{run.percentile_ms(50):>8.0f}{run.percentile_ms(95):>8.0f}"
            f"{run.tiles_per_s:>9.1f}"
        )
    print(
        f"Item tiles: ours p50 {ours.percentile_ms(50):.0f} ms vs stock "
        f"{stock.percentile_ms(50):.0f} ms -> "
        f"{ours.percentile_ms(50) / stock.percentile_ms(50):.2f}x p50, "
        f"{ours.percentile_ms(95) / stock.percentile_ms(95):.2f}x p95, "
        f"{ours.tiles_per_s / stock.tiles_per_s:.2f}x tiles/s"
    )


def floor_run(items: list[dict], zooms: list[int]) -> Run:
    """The in-process floor: rio-tiler reads and encodes each preset tile, one after another,
    with the item already in hand (no HTTP, no database)."""
    import pystac
    from titiler.core.utils import render_image
    from titiler.pgstac.reader import PgSTACReader

    seconds, bodies = [], []
    start_all = time.perf_counter()
    for item in items:
        preset = derive_presets(item["assets"])[PRESET]
        stac = pystac.Item.from_dict(item)
        for t in WEB_MERCATOR.tiles(*item["bbox"], zooms=zooms):
            start = time.perf_counter()
            with PgSTACReader(stac) as reader:
                image = reader.tile(
                    t.x, t.y, t.z, assets=[{"name": preset.asset, "indexes": list(preset.indexes)}]
                )
            body, _ = render_image(image, rescale=list(preset.rescale), output_format=None)
            seconds.append(time.perf_counter() - start)
            bodies.append(body)
    return Run(seconds, bodies, time.perf_counter() - start_all)


def test_presets_cold_and_hot_vs_stock_floor_and_wmts(
    items: list[dict], tilers: dict[str, str]
) -> None:
    ours, stock = tilers["ours"], tilers["stock"]
    stock_paths = [p for item in items for p in raw_paths([item], ZOOMS, preset_query(item))]
    ours_paths = preset_paths(items, ZOOMS)
    for base in tilers.values():
        fire(base, raw_paths(items, WARM_UP_ZOOMS))
    floor_run(items, WARM_UP_ZOOMS)

    stock_run = fire(stock, stock_paths)
    cold = fire(ours, ours_paths)  # first request for each tile: rendered
    hot = fire(ours, ours_paths)  # the same tiles again: from the response cache
    for a, b in zip(cold.bodies, stock_run.bodies, strict=True):
        if a != b:
            diff = np.abs(decode(a).astype("int32") - decode(b).astype("int32"))
            assert diff.max() <= 1, f"preset and raw tiles differ by up to {diff.max()}"
    # One client, tiles never requested before (a dummy parameter misses the cache), against
    # the floor reading the same tiles in-process.
    sequential = fire(ours, [f"{p}?pass=sequential" for p in ours_paths], clients=1)
    floor = floor_run(items, ZOOMS)

    item_url = f"/collections/{COLLECTION}/items/{items[0]['id']}"
    wmts_ours = fire(ours, [f"{item_url}/presets/WMTSCapabilities.xml?n={i}" for i in range(40)], 1)
    wmts_stock = fire(
        stock, [f"{item_url}/WMTSCapabilities.xml?{QUERY}&n={i}" for i in range(40)], 1
    )

    print(f"\nPreset '{PRESET}' tiles: {len(ours_paths)} distinct z{ZOOMS[0]}-z{ZOOMS[-1]}")
    print(f"{'run':<40}{'p50 ms':>8}{'p95 ms':>8}{'tiles/s':>9}")
    for name, run in (
        ("stock titiler-pgstac, raw params (8 cl)", stock_run),
        ("ours preset, cold (8 clients)", cold),
        ("ours preset, hot/cached (8 clients)", hot),
        ("ours preset, cold, 1 client", sequential),
        ("in-process floor (rio-tiler, 1 thread)", floor),
    ):
        print(
            f"{name:<40}{run.percentile_ms(50):>8.1f}{run.percentile_ms(95):>8.1f}"
            f"{run.tiles_per_s:>9.1f}"
        )
    print(
        f"tiles/s vs stock: cold {cold.tiles_per_s / stock_run.tiles_per_s:.2f}x, "
        f"hot {hot.tiles_per_s / stock_run.tiles_per_s:.2f}x (target >= 3x)"
    )
    print(
        f"p50 vs in-process floor: {sequential.percentile_ms(50):.1f} ms / "
        f"{floor.percentile_ms(50):.1f} ms = "
        f"{sequential.percentile_ms(50) / floor.percentile_ms(50):.2f}x (target <= 1.5x)"
    )
    print(
        f"WMTS capabilities p50: ours {wmts_ours.percentile_ms(50):.1f} ms "
        f"({len(wmts_ours.bodies[0]) / 1024:.1f} KB) vs titiler "
        f"{wmts_stock.percentile_ms(50):.1f} ms ({len(wmts_stock.bodies[0]) / 1024:.0f} KB) = "
        f"{wmts_ours.percentile_ms(50) / wmts_stock.percentile_ms(50):.3f}x (target <= 20 ms)"
    )
