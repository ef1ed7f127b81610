"""COG writing: our writer (`csdr_ingest.cog.write_cog`, rio-cogeo) against GDAL's COG driver on
one 5000 x 5000 x 4 uint16 synthetic scene. Each write runs in its own process, so its peak RSS
is its own; runs alternate between the writers. Prints ratios; asserts only correctness."""

import json
import statistics
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from csdr_ingest.synthetic import Scene, write_scene

REPO_ROOT = Path(__file__).parents[2]
RUNS = 3
SCENE = Scene(
    "bench_5000", "EPSG:32650", 662_000, 4_190_000, datetime(2024, 5, 12, 3, 4, 5), 7, size=5000
)
WRITERS = {"ours": "ours (rio-cogeo)", "gdal": "GDAL COG driver"}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_scene(SCENE, tmp_path_factory.mktemp("cog-source"))


def run_writer(writer: str, src: Path, dst: Path) -> dict[str, float]:
    """One write in a fresh child process: its wall time and peak RSS."""
    dst.unlink(missing_ok=True)
    out = subprocess.run(
        [sys.executable, "-m", "tests.bench.cog_writers", writer, str(src), str(dst)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def assert_same_pixels(cog: Path, source: Path) -> None:
    valid, errors, _ = cog_validate(cog, quiet=True)
    assert valid, f"{cog.name}: {errors}"
    with rasterio.open(cog) as out, rasterio.open(source) as src:
        assert (out.crs, out.transform, out.nodata) == (src.crs, src.transform, src.nodata)
        assert out.overviews(1), f"{cog.name} has no overviews"
        assert np.array_equal(out.read(), src.read())


def test_cog_writer_vs_gdal_cog_driver(source: Path, tmp_path: Path) -> None:
    runs: dict[str, list[dict[str, float]]] = {w: [] for w in WRITERS}
    outputs = {w: tmp_path / f"{w}.tif" for w in WRITERS}
    for _ in range(RUNS):
        for writer in WRITERS:
            runs[writer].append(run_writer(writer, source, outputs[writer]))

    for writer in WRITERS:
        assert_same_pixels(outputs[writer], source)

    summary = {
        w: {
            "best": min(r["seconds"] for r in runs[w]),
            "median": statistics.median(r["seconds"] for r in runs[w]),
            "cpu": statistics.median(r["cpu_s"] for r in runs[w]),
            "peak_mb": max(r["peak_mb"] for r in runs[w]),
            "import_mb": max(r["import_mb"] for r in runs[w]),
            "size_mb": outputs[w].stat().st_size / 2**20,
        }
        for w in WRITERS
    }
    print(f"\nCOG write, {SCENE.size}x{SCENE.size}x4 uint16, {RUNS} runs each, one process per run")
    print(
        f"{'writer':<18}{'best s':>8}{'median s':>10}{'CPU s':>7}{'peak RSS MB':>13}{'size MB':>9}"
    )
    for w, s in summary.items():
        print(
            f"{WRITERS[w]:<18}{s['best']:>8.2f}{s['median']:>10.2f}{s['cpu']:>7.1f}"
            f"{s['peak_mb']:>13.0f}{s['size_mb']:>9.1f}"
        )
    print(
        "(CPU s: median user + system time, less sensitive to other load than wall time; "
        f"peak RSS includes {summary['ours']['import_mb']:.0f} MB of imports, same for both)"
    )
    ours, gdal = summary["ours"], summary["gdal"]
    # Best of 3 for the ratio: on a shared machine, noise only ever adds time.
    print(
        f"COG write: ours {ours['best']:.2f} s vs GDAL COG driver {gdal['best']:.2f} s -> "
        f"{ours['best'] / gdal['best']:.2f}x time (best of {RUNS}), "
        f"{ours['median'] / gdal['median']:.2f}x (median), "
        f"{ours['cpu'] / gdal['cpu']:.2f}x CPU, "
        f"{ours['peak_mb'] / gdal['peak_mb']:.2f}x memory, "
        f"{ours['size_mb'] / gdal['size_mb']:.2f}x size"
    )
