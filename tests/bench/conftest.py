"""Benchmarks are `bench_*.py` files, which pytest's default `python_files` never collects: plain
`pytest` (`make test`) skips them. They are collected only when the run names this directory or a
file in it, as `make bench` does (`pytest tests/bench ... --override-ini=testpaths=tests/bench`)."""

from __future__ import annotations

from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).parent.resolve()


def bench_requested(config: pytest.Config) -> bool:
    """True when a path given to this run (or testpaths, when none is) lies in tests/bench."""
    paths = (
        Path(config.invocation_params.dir, arg.split("::")[0]).resolve() for arg in config.args
    )
    return any(p == BENCH_DIR or BENCH_DIR in p.parents for p in paths)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    """Collect `bench_*.py` as test modules, but only in a benchmark run."""
    if parent.session.isinitpath(file_path):
        return None  # a file named on the command line is collected by pytest itself
    if (
        file_path.suffix == ".py"
        and file_path.name.startswith("bench_")
        and bench_requested(parent.config)
    ):
        return pytest.Module.from_parent(parent, path=file_path)
    return None
