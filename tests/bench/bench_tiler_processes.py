"""Scaling out by processes (DESIGN.md, "Scale-out path"): item tiles from two tiler processes
against one, on this machine's two cores. The demo scenes as real COGs; the same distinct
z12-z14 tiles at 8 concurrent clients, sent all to one process, or alternately to two as a
round-robin load balancer would; three passes alternating, each new to the response caches,
after a warm-up pass on other zooms. Two layouts: a core each (each process pinned to its own
core, as a replica with one core of its own is; the scale-out figure), and no limits (one process
alone already takes more than a core: GDAL decodes outside the GIL). Prints for each the tiles/s
ratio (target >= 1.7x), the cores the tiler processes used during each pass (CPU seconds over
wall seconds, from /proc), the tiles per CPU second of two against one, and the load average: on
a machine others load, two processes cannot get cores that are not free.
Asserts only 200 PNGs (`fire`)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psycopg
import pytest

from conftest import free_port
from csdr_ingest.pipeline import ingest_file
from csdr_ingest.settings import Settings
from csdr_ingest.synthetic import write_demo_scenes
from tests.bench.bench_tiler import (
    CLIENTS,
    COLLECTION,
    PASSES,
    WARM_UP_ZOOMS,
    ZOOMS,
    Run,
    fire,
    load_average,
    raw_paths,
    with_param,
)
from tests.e2e.processes import service_process


@pytest.fixture
def scenes(pg_env: dict[str, str], tmp_path: Path) -> list[dict]:
    """The demo scenes ingested as real COGs and items."""
    settings = Settings(assets_dir=tmp_path / "assets")
    with psycopg.connect(autocommit=True) as conn:
        return [
            ingest_file(scene, conn, settings, collection=COLLECTION)
            for scene in write_demo_scenes(tmp_path / "scenes")
        ]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far (/proc/<pid>/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / ticks


def cores_used(pids: list[int], run: Callable[[], Run]) -> tuple[Run, float]:
    """The pass `run` makes, and the cores the processes used during it."""
    before = cpu_seconds(pids)
    done = run()
    return done, (cpu_seconds(pids) - before) / done.wall_s


def fire_balanced(bases: list[str], paths: list[str], clients: int = CLIENTS) -> Run:
    """GET every path from `clients` threads, the i-th path from the (i mod n)-th process."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    sessions = [httpx.Client(base_url=b, limits=limits, timeout=30) for b in bases]
    try:

        def get(indexed: tuple[int, str]) -> tuple[float, bytes]:
            i, path = indexed
            start = time.perf_counter()
            r = sessions[i % len(sessions)].get(path)
            elapsed = time.perf_counter() - start
            assert r.status_code == 200 and r.content[:4] == b"\x89PNG", r.text[:300]
            return elapsed, r.content

        with ThreadPoolExecutor(clients) as pool:
            start = time.perf_counter()
            results = list(pool.map(get, enumerate(paths)))
            wall_s = time.perf_counter() - start
    finally:
        for session in sessions:
            session.close()
    return Run([s for s, _ in results], [b for _, b in results], wall_s)


@dataclass
class Layout:
    """One way of giving the tiler processes cores, and what its passes measured."""

    name: str
    cpus: list[set[int] | None]
    one: list[Run] = field(default_factory=list)
    two: list[Run] = field(default_factory=list)
    cores: dict[str, list[float]] = field(default_factory=lambda: {"one": [], "two": []})

    def ratios(self) -> list[float]:
        return [t.tiles_per_s / o.tiles_per_s for t, o in zip(self.two, self.one, strict=True)]

    def per_core(self) -> list[float]:
        """Tiles per CPU second, two against one: near 1x, two processes cost each other
        nothing, and tiles/s grow with the cores they are given."""
        return [
            (t.tiles_per_s / self.cores["two"][i]) / (o.tiles_per_s / self.cores["one"][i])
            for i, (t, o) in enumerate(zip(self.two, self.one, strict=True))
        ]


def measure(layout: Layout, scenes: list[dict], pg_env: dict[str, str], tmp_path: Path) -> None:
    """Two tiler processes started with the layout's cores; passes alternate one and two."""
    tiles = raw_paths(scenes, ZOOMS)
    with ExitStack() as stack:
        started = [
            stack.enter_context(
                service_process(
                    "csdr_tiler.app:create_app", free_port(), pg_env, tmp_path, cpus=cpus
                )
            )
            for cpus in layout.cpus
        ]
        bases, pids = [url for url, _ in started], [proc.pid for _, proc in started]
        for base in bases:
            fire(base, raw_paths(scenes, WARM_UP_ZOOMS))
        for i in range(PASSES):
            fresh = [with_param(p, f"{layout.name}={i}") for p in tiles]
            run, used = cores_used(
                pids[:1], lambda f=fresh: fire(bases[0], [with_param(p, "one") for p in f])
            )
            layout.one.append(run)
            layout.cores["one"].append(used)
            run, used = cores_used(
                pids, lambda f=fresh: fire_balanced(bases, [with_param(p, "two") for p in f])
            )
            layout.two.append(run)
            layout.cores["two"].append(used)


def report(layout: Layout, tiles: int) -> None:
    print(
        f"\nItem tiles, two tiler processes vs one, {layout.name}: {tiles} distinct"
        f" z{ZOOMS[0]}-z{ZOOMS[-1]} tiles, {CLIENTS} clients, round robin over the two"
    )
    print(f"{'pass':<6}{'processes':<11}{'p50 ms':>8}{'p95 ms':>8}{'tiles/s':>9}{'cores':>7}")
    for i in range(PASSES):
        for name, run in (("one", layout.one[i]), ("two", layout.two[i])):
            print(
                f"{i:<6}{name:<11}{run.percentile_ms(50):>8.0f}{run.percentile_ms(95):>8.0f}"
                f"{run.tiles_per_s:>9.1f}{layout.cores[name][i]:>7.2f}"
            )
    ratios, per_core = layout.ratios(), layout.per_core()
    print(
        f"Two tiler processes vs one, {layout.name}: {float(np.median(ratios)):.2f}x tiles/s"
        f" (median; passes {', '.join(f'{r:.2f}x' for r in ratios)}; target >= 1.7x);"
        f" tiles per CPU second two vs one {float(np.median(per_core)):.2f}x; cores used: one"
        f" process up to {max(layout.cores['one']):.2f}, two up to"
        f" {max(layout.cores['two']):.2f} of {os.cpu_count()}; load average {load_average()}"
    )


def test_two_tiler_processes_vs_one(
    scenes: list[dict], pg_env: dict[str, str], tmp_path: Path
) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    layouts = [
        # Scale-out by replicas of one core each (a replica per small host, or a CPU limit of
        # one): the second process brings its own core; the client and PostgreSQL run on
        # whatever is free.
        Layout("a core each", [{cpus[0]}, {cpus[1 % len(cpus)]}]),
        # No limits: one process already takes more than a core (GDAL decodes outside the GIL),
        # so on two cores shared with the client and PostgreSQL a second one finds less free.
        Layout("no core limits", [None, None]),
    ]
    for layout in layouts:
        measure(layout, scenes, pg_env, tmp_path)
    for layout in layouts:
        report(layout, len(raw_paths(scenes, ZOOMS)))
