"""Run one COG writer once, in its own process, and print its times and peak memory as JSON.

Run: python -m tests.bench.cog_writers {ours,gdal} SRC DST
Both writers pay the same imports, so the peak RSS differences are the writers' own.
"""

import argparse
import json
import resource
import time
from pathlib import Path

import rasterio
import rasterio.shutil

from csdr_ingest.cog import write_cog


def write_ours(src: Path, dst: Path) -> None:
    """The ingest's writer, with the ingest's default settings."""
    with rasterio.open(src) as dataset:
        write_cog(dataset, dst, "DEFLATE", 512)


def write_gdal(src: Path, dst: Path) -> None:
    """The baseline: GDAL's COG driver through rasterio, options as in DESIGN.md."""
    rasterio.shutil.copy(
        src,
        dst,
        driver="COG",
        COMPRESS="DEFLATE",
        PREDICTOR=2,
        BLOCKSIZE=512,
        OVERVIEW_RESAMPLING="AVERAGE",
        NUM_THREADS="ALL_CPUS",
    )


WRITERS = {"ours": write_ours, "gdal": write_gdal}


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), over all its threads.

    Not getrusage's ru_maxrss: Linux carries it over fork and exec, so a child of a big pytest
    process would report the parent's size.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def cpu_s() -> float:
    """CPU seconds this process has used so far, user + system, over all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    """Write once; print the write's wall and CPU time and the process's peak RSS."""
    parser = argparse.ArgumentParser()
    parser.add_argument("writer", choices=WRITERS)
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    args = parser.parse_args()
    import_mb = peak_rss_mb()
    start, cpu_start = time.perf_counter(), cpu_s()
    WRITERS[args.writer](args.src, args.dst)
    seconds, cpu = time.perf_counter() - start, cpu_s() - cpu_start
    print(
        json.dumps(
            {"seconds": seconds, "cpu_s": cpu, "peak_mb": peak_rss_mb(), "import_mb": import_mb}
        )
    )


if __name__ == "__main__":
    main()
