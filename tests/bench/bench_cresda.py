"""CRESDA package ingest: a GF-1 WFV-sized look-alike (12000 x 13719 x 4 uint16, textured, the real
RPB, tar.gz) from tarball to registered item, against the two-step baseline in the same run
(unpack, GDAL warp with the RPCs to a GTiff via rasterio, then GDAL's COG driver via
rasterio.shutil.copy). Each run is its own process, measured from outside as a whole: wall time
from spawn to exit, CPU time of the process and every descendant it waited for (wait4), and peak
memory of its process tree (RSS summed over the tree, sampled from /proc, and never below the
process's own VmHWM). Then two packages are ingested at once: their CPU seconds over the wall
seconds of the pair say how many cores they kept busy. Prints ratios; asserts only correctness.

`CSDR_BENCH_CRESDA_FACTOR=N` downscales the scene by N (RPB and XML scaled to match) for a quick
look; the goals are for N=1. Run one ingest by hand:
python -m tests.bench.bench_cresda {ours,baseline} PACKAGE WORK_DIR  (PG* variables for `ours`)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, reproject
from rio_cogeo.cogeo import cog_validate

from csdr_ingest.packages import unpacked
from csdr_ingest.pipeline import ingest_path
from csdr_ingest.rpc import utm_crs
from csdr_ingest.settings import Settings
from tests.fixtures import CRESDA_WFV as WFV
from tests.support.lookalike import write_lookalike

REPO_ROOT = Path(__file__).parents[2]
FACTOR = int(os.environ.get("CSDR_BENCH_CRESDA_FACTOR", "1"))
# The parallel run only measures CPU use: a quarter of the pixels (half a side) is enough.
PARALLEL_FACTOR = FACTOR * 2
CHILD_TIMEOUT_S = 3600
SAMPLE_S = 0.1
PAGE = os.sysconf("SC_PAGE_SIZE")


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM; not ru_maxrss, which survives fork+exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def machine_jiffies() -> tuple[int, int]:
    """(busy, idle) clock ticks of all CPUs since boot (/proc/stat): the machine is shared, so
    what else ran beside a measured run is printed with it."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values[:8]) - idle, idle


def machine_busy(before: tuple[int, int]) -> float:
    """Fraction of the machine's CPU time that was busy (anyone's work) since `before`."""
    busy, idle = (now - then for now, then in zip(machine_jiffies(), before, strict=True))
    return busy / max(1, busy + idle)


def tree_rss_mb(root: int) -> float:
    """Resident memory of process `root` and all its descendants, summed; read from /proc by
    walking each process's `task/*/children` (cheap enough to sample often on 2 cores)."""
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:  # the process ended while we looked
            continue
    return total / 2**20


@dataclass
class Run:
    """One ingest process, watched from outside until it exits."""

    proc: subprocess.Popen
    out: Path
    started: float = field(default_factory=time.perf_counter)
    seconds: float = 0.0
    cpu_s: float = 0.0
    tree_peak_mb: float = 0.0
    status: int | None = None

    def watch(self) -> None:
        """Sample the tree's memory until the process exits, then take its rusage (wait4)."""
        while True:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                break
            self.tree_peak_mb = max(self.tree_peak_mb, tree_rss_mb(self.proc.pid))
            time.sleep(SAMPLE_S)
        self.seconds = time.perf_counter() - self.started
        self.cpu_s = usage.ru_utime + usage.ru_stime
        self.status = self.proc.returncode = os.waitstatus_to_exitcode(status)

    def result(self) -> dict:
        """The child's JSON lines merged with what was measured from outside."""
        text = self.out.read_text()
        assert self.status == 0, text[-3000:]
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        merged = {k: v for line in lines for k, v in line.items()}
        peak = max(self.tree_peak_mb, merged["self_peak_mb"])
        return merged | {"seconds": self.seconds, "cpu_s": self.cpu_s, "peak_mb": peak}


def start(runner: str, package: Path, work: Path, env: dict[str, str]) -> Run:
    """Spawn one measured run (its output in WORK.log); `finish` waits for it."""
    work.mkdir(parents=True, exist_ok=True)
    out = work.with_suffix(".log")
    with out.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.bench_cresda", runner, str(package), str(work)],
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Run(proc, out)


def finish(runs: list[Run]) -> list[dict]:
    """Watch every run until it exits; return their results."""
    threads = [threading.Thread(target=r.watch) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(CHILD_TIMEOUT_S)
    return [r.result() for r in runs]


def run_ours(package: Path, work: Path) -> None:
    """The ingest pipeline, as the service runs it, into the database of the PG* variables."""
    settings = Settings(assets_dir=work / "assets", work_dir=work / "tmp")
    with psycopg.connect(autocommit=True) as conn:
        [item] = ingest_path(package, conn, settings)
    print(json.dumps({"item": item["id"], "cog": item["assets"]["data"]["href"]}))


def run_baseline(package: Path, work: Path) -> None:
    """Unpack, `gdalwarp`-like RPC warp to a tiled GTiff, then GDAL's COG driver."""
    (work / "tmp").mkdir(parents=True, exist_ok=True)
    with unpacked(package, work / "tmp") as root:
        tiff = next(root.rglob("*.tiff"))
        with rasterio.open(tiff) as src:
            rpcs = src.rpcs
            crs = utm_crs(rpcs.long_off, rpcs.lat_off)
            transform, width, height = calculate_default_transform(
                None, crs, src.width, src.height, rpcs=rpcs, RPC_HEIGHT=rpcs.height_off
            )
            warped = work / "tmp" / "warped.tif"
            profile = {
                "driver": "GTiff",
                "width": width,
                "height": height,
                "count": src.count,
                "dtype": src.dtypes[0],
                "crs": crs,
                "transform": transform,
                "nodata": 0,
                "tiled": True,
                "blockxsize": 512,
                "blockysize": 512,
                "BIGTIFF": "IF_SAFER",
            }
            bands = list(range(1, src.count + 1))
            with rasterio.open(warped, "w", **profile) as dst:
                reproject(
                    rasterio.band(src, bands),
                    rasterio.band(dst, bands),
                    rpcs=rpcs,
                    dst_crs=crs,
                    dst_transform=transform,
                    dst_nodata=0,
                    resampling=Resampling.bilinear,
                    num_threads=os.cpu_count() or 1,
                    RPC_HEIGHT=rpcs.height_off,
                )
    cog = work / "baseline.tif"
    rasterio.shutil.copy(
        warped,
        cog,
        driver="COG",
        COMPRESS="DEFLATE",
        PREDICTOR=2,
        BLOCKSIZE=512,
        OVERVIEW_RESAMPLING="AVERAGE",
        NUM_THREADS="ALL_CPUS",
    )
    warped.unlink()
    print(json.dumps({"cog": str(cog)}))


RUNNERS = {"ours": run_ours, "baseline": run_baseline}


def main() -> None:
    """One run in this process; prints its results and its own peak RSS as JSON (the parent
    measures time, CPU and the process tree's memory)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("runner", choices=RUNNERS)
    parser.add_argument("package", type=Path)
    parser.add_argument("work", type=Path)
    args = parser.parse_args()
    RUNNERS[args.runner](args.package, args.work)
    print(json.dumps({"self_peak_mb": peak_rss_mb()}))


def build_packages(out: Path, factor: int, count: int) -> tuple[list[Path], int, int, int]:
    """`count` tar.gz look-alikes of the WFV fixture with distinct ProductIDs (the TIFF is
    written once and hard-linked); return them and the TIFF's width, height, bands."""
    folder = write_lookalike(WFV, out / "src", max_size=13719 // factor, archive=None)
    tiff = next(folder.glob("*.tiff"))
    with rasterio.open(tiff) as src:
        shape = (src.width, src.height, src.count)
    packages = []
    for n in range(count):
        copy = out / f"p{n}" / folder.name
        copy.mkdir(parents=True)
        for f in folder.iterdir():
            if f.suffix == ".xml":
                text = f.read_text(encoding="utf-8")
                text = re.sub(
                    r"<ProductID>(\d+)</ProductID>", rf"<ProductID>\g<1>{n}</ProductID>", text
                )
                (copy / f.name).write_text(text, encoding="utf-8")
            else:
                os.link(f, copy / f.name)
        target = out / f"p{n}" / f"{folder.name}.tar.gz"
        with tarfile.open(target, "w:gz", compresslevel=1) as tf:
            tf.add(copy, arcname=folder.name)
        shutil.rmtree(copy)
        packages.append(target)
    shutil.rmtree(folder)
    return packages, *shape


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], int, int, int]:
    started = time.perf_counter()
    built = build_packages(tmp_path_factory.mktemp("cresda-bench"), FACTOR, 1)
    size_mb = built[0][0].stat().st_size / 2**20
    print(
        f"\ninput: {built[1]}x{built[2]}x{built[3]} uint16 package built in "
        f"{time.perf_counter() - started:.0f} s ({size_mb:.0f} MB tar.gz)"
    )
    return built


def test_package_ingest_vs_warp_then_cog(packages, database, tmp_path: Path) -> None:
    [package], width, height, count = packages
    jiffies = machine_jiffies()
    [ours] = finish([start("ours", package, tmp_path / "ours", database)])
    [base] = finish([start("baseline", package, tmp_path / "base", database)])
    busy = machine_busy(jiffies)

    for cog in (ours["cog"], base["cog"]):
        valid, errors, _ = cog_validate(cog, quiet=True)
        assert valid, f"{cog}: {errors}"
    with psycopg.connect(**_libpq(database)) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pgstac.items WHERE id = %s", (ours["item"],)
        ).fetchone() == (1,)

    source_mb = width * height * count * 2 / 1e6
    ratio = ours["seconds"] / base["seconds"]
    print(
        f"\nCRESDA package {width}x{height}x{count} uint16 ({source_mb:.0f} MB of source pixels),"
        " tar.gz -> registered item, one process per run (start-up included)"
    )
    print(f"{'run':<34}{'wall s':>8}{'CPU s':>8}{'cores':>7}{'peak tree MB':>14}", end="")
    print(f"{'MB/s':>8}{'COG MB':>8}")
    for name, r in (("ours (ingest_path)", ours), ("baseline (warp GTiff, COG driver)", base)):
        print(
            f"{name:<34}{r['seconds']:>8.1f}{r['cpu_s']:>8.1f}{r['cpu_s'] / r['seconds']:>7.2f}"
            f"{r['peak_mb']:>14.0f}{source_mb / r['seconds']:>8.1f}"
            f"{Path(r['cog']).stat().st_size / 1e6:>8.1f}"
        )
    print(
        f"package ingest: ours {ours['seconds']:.1f} s vs baseline {base['seconds']:.1f} s -> "
        f"{ratio:.2f}x time (goal <= 0.7), {ours['cpu_s'] / base['cpu_s']:.2f}x CPU, "
        f"peak {ours['peak_mb'] / 1024:.2f} GiB (goal <= 2), {source_mb / ours['seconds']:.1f} MB/s"
        f" of source pixels; the machine's CPUs were {busy:.0%} busy over both runs (shared)"
    )


def _libpq(env: dict[str, str]) -> dict[str, str]:
    keys = {
        "PGHOST": "host",
        "PGPORT": "port",
        "PGUSER": "user",
        "PGPASSWORD": "password",
        "PGDATABASE": "dbname",
    }
    return {keys[k]: v for k, v in env.items() if k in keys}


def test_two_packages_at_once_keep_both_cores_busy(database, tmp_path: Path) -> None:
    pair, width, height, count = build_packages(tmp_path / "in", PARALLEL_FACTOR, 2)
    started, jiffies = time.perf_counter(), machine_jiffies()
    runs = finish([start("ours", p, tmp_path / f"w{i}", database) for i, p in enumerate(pair)])
    wall, busy = time.perf_counter() - started, machine_busy(jiffies)
    cpu = sum(r["cpu_s"] for r in runs)
    cores = os.cpu_count() or 1
    with psycopg.connect(**_libpq(database)) as conn:
        assert conn.execute("SELECT count(*) FROM pgstac.items").fetchone() == (2,)
    print(
        f"\ntwo {width}x{height}x{count} packages ingested at once: {wall:.1f} s wall, "
        f"{cpu:.1f} CPU s of the two process trees -> {cpu / wall:.2f} of {cores} cores busy "
        f"(goal ~>= 1.6); each {' and '.join(format(r['seconds'], '.1f') for r in runs)} s, "
        f"peak tree {max(r['peak_mb'] for r in runs):.0f} MB each; the machine's CPUs were"
        f" {busy:.0%} busy meanwhile (everyone's work: {cpu / wall / cores:.0%} was ours)"
    )


if __name__ == "__main__":
    main()
