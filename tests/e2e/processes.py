"""Start a node service as a real uvicorn process on 127.0.0.1 and stop it when done."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


@contextmanager
def service(
    factory: str,
    port: int,
    env: dict[str, str],
    log_dir: Path,
    ready_path: str = "/readyz",
    timeout_s: float = 60,
) -> Iterator[str]:
    """Run `uvicorn <factory> --factory` with `env` added; yield its base URL once ready."""
    with service_process(factory, port, env, log_dir, ready_path, timeout_s) as (url, _):
        yield url


@contextmanager
def service_process(
    factory: str,
    port: int,
    env: dict[str, str],
    log_dir: Path,
    ready_path: str = "/readyz",
    timeout_s: float = 60,
    cpus: set[int] | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """service(), yielding the process too (for tests that kill it); a killed process is fine.
    `cpus`: the only cores the process and all its threads may run on (as `taskset`)."""
    name = factory.split(".")[0]
    log = open(log_dir / f"{name}-{port}.log", "a")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            factory,
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
        ],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{factory} exited: {(log_dir / log.name).read_text()[-3000:]}")
            try:
                if httpx.get(url + ready_path, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{factory} not ready on {url} after {timeout_s}s")
            time.sleep(0.2)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
