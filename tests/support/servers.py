"""An ASGI app served by uvicorn in a thread of the test process, on 127.0.0.1, for tests that
need a real HTTP peer (an origin node's download route, discovery's catalog)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from conftest import free_port


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:
        pass  # not the main thread


@contextmanager
def served(app: Any, ready_path: str = "/", port: int | None = None) -> Iterator[str]:
    """Serve `app` until the block ends; yield its base URL once `ready_path` answers."""
    port = port or free_port()
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}{ready_path}", timeout=2)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not start") from None
            time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
