"""A real S3-speaking server on 127.0.0.1 for tests: moto's standalone server (`moto[server]`,
pinned in requirements/constraints.txt), started on a free port, stopped by its pid, with the
AWS_* variables that point boto3, GDAL and the node's services at it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from conftest import free_port
from csdr_storage.store import s3_client


@dataclass
class S3Server:
    """The server's endpoint and the environment that reaches it."""

    endpoint: str
    env: dict[str, str]
    pid: int

    def client(self) -> Any:
        """A boto3 client of the server."""
        return s3_client(self.env)

    def create_bucket(self, bucket: str) -> None:
        """Make a bucket."""
        self.client().create_bucket(Bucket=bucket)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object name in the bucket under `prefix`."""
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@contextmanager
def s3_server(log_dir: Path, timeout_s: float = 30) -> Iterator[S3Server]:
    """moto's server on a free port of 127.0.0.1 until the block ends."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = open(log_dir / f"moto-{port}.log", "a")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "csdr-test",
        "AWS_SECRET_ACCESS_KEY": "csdr-test-secret",
        "AWS_REGION": "us-east-1",
    }
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto exited: {(log_dir / log.name).read_text()[-2000:]}")
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"moto not answering on {endpoint}") from None
                time.sleep(0.2)
        yield S3Server(endpoint, env, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
