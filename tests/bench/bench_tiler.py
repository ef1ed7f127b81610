"""Item tiles: our tiler (`csdr_tiler`) against stock `titiler.pgstac.main:app`, both as real
uvicorn processes over one fresh database holding the demo scenes ingested as real COGs. The same
distinct z12-z14 tiles go to each at 8 concurrent clients, after a warm-up pass. Prints latency and
throughput ratios; asserts only that both answer every tile with the same image."""

import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

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
from tests.e2e.processes import service

COLLECTION = "bench"
ZOOMS = [12, 13, 14]
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
def tile_paths(pg_env: dict[str, str], tmp_path: Path) -> list[str]:
    """Ingest the demo scenes; return the distinct z12-z14 tile paths over each item's bbox."""
    settings = Settings(assets_dir=tmp_path / "assets")
    paths = []
    with psycopg.connect(autocommit=True) as conn:
        for scene in write_demo_scenes(tmp_path / "scenes"):
            item = ingest_file(scene, conn, settings, collection=COLLECTION)
            paths += [
                f"/collections/{COLLECTION}/items/{item['id']}/tiles/WebMercatorQuad/"
                f"{t.z}/{t.x}/{t.y}.png?{QUERY}"
                for t in WEB_MERCATOR.tiles(*item["bbox"], zooms=ZOOMS)
            ]
    return paths


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


def fire(base: str, paths: list[str]) -> Run:
    """GET every path from CLIENTS threads sharing a keep-alive pool; check each is a 200 PNG."""
    deadline = time.monotonic() + PASS_TIMEOUT_S
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    with httpx.Client(base_url=base, limits=limits, timeout=30) as client:

        def get(path: str) -> tuple[float, bytes]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"pass over {len(paths)} tiles took over {PASS_TIMEOUT_S} s")
            start = time.perf_counter()
            r = client.get(path)
            elapsed = time.perf_counter() - start
            assert r.status_code == 200, f"{base}{path}: {r.status_code} {r.text[:300]}"
            assert r.headers["content-type"] == "image/png" and r.content[:4] == b"\x89PNG"
            return elapsed, r.content

        with ThreadPoolExecutor(CLIENTS) as pool:
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
    tile_paths: list[str], tilers: dict[str, str]
) -> None:
    for base in tilers.values():
        fire(base, tile_paths)  # warm-up: imports, connection pool, GDAL caches
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
