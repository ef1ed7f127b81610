"""What the services' allocator settings cost in speed: item tiles from a tiler process started
with the environment `make up` gives every service (infra/local/node.py PROCESS_ENV: two glibc
arenas, blocks of 256 KiB and more mapped apart, which keeps the tiler's memory flat in the
soak) against one with glibc's defaults, the same tiles at 8 clients, passes alternating
(bench_tiler.interleaved). Prints the tiles/s ratio (goal >= 0.95x: flat memory should cost at
most 5 % of the tiles). Asserts only 200 PNGs (`fire`)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import numpy as np

from conftest import free_port
from infra.local.node import PROCESS_ENV
from tests.bench.bench_tiler import (
    CLIENTS,
    WARM_UP_ZOOMS,
    ZOOMS,
    fire,
    interleaved,
    load_average,
    ratios,
    raw_paths,
)
from tests.bench.bench_tiler_processes import scenes  # noqa: F401 - the fixture
from tests.e2e.processes import service_process

GOAL = 0.95


def test_tiles_with_the_services_allocator_settings_vs_glibc_defaults(
    scenes: list[dict],  # noqa: F811 - the fixture imported above
    pg_env: dict[str, str],
    tmp_path: Path,
) -> None:
    tiles = raw_paths(scenes, ZOOMS)
    with ExitStack() as stack:
        bases = {
            name: stack.enter_context(
                service_process("csdr_tiler.app:create_app", free_port(), env, tmp_path)
            )[0]
            for name, env in (("make up's", {**pg_env, **PROCESS_ENV}), ("glibc's", pg_env))
        }
        for base in bases.values():
            fire(base, raw_paths(scenes, WARM_UP_ZOOMS))
        runs = interleaved({name: (base, tiles) for name, base in bases.items()})
    each = ratios(runs["make up's"], runs["glibc's"])
    print(
        f"\nItem tiles, {len(tiles)} distinct z{ZOOMS[0]}-z{ZOOMS[-1]}, {CLIENTS} clients:"
        f" allocator settings {PROCESS_ENV} vs glibc's defaults"
    )
    for name, passes in runs.items():
        print(f"  {name:<10} tiles/s {', '.join(f'{r.tiles_per_s:.1f}' for r in passes)}")
    print(
        f"Tiles with make up's allocator settings vs glibc's defaults: "
        f"{float(np.median(each)):.2f}x tiles/s (median; passes "
        f"{', '.join(f'{r:.2f}x' for r in each)}; goal >= {GOAL}x); load average {load_average()}"
    )
