"""A webhook receiver for tests: an HTTP server on 127.0.0.1 that records each request, answers
with a chosen status, and can be stopped and started again on the same port."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook


@dataclass
class Received:
    """One request as it arrived."""

    headers: dict[str, str]
    body: bytes
    at: float

    def verified(self, secret: str) -> dict[str, Any]:
        """The CloudEvent, after its Standard Webhooks signature verified (raises otherwise)."""
        return dict(Webhook(secret).verify(self.body, self.headers))


@dataclass
class Receiver:
    """Records every POST; `status` is what it answers."""

    port: int
    status: int = 204
    delay_s: float = 0.0
    """How long it takes to answer (after recording the request)."""
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver._lock:
                    receiver.received.append(
                        Received({k.lower(): v for k, v in self.headers.items()}, body, time.time())
                    )
                time.sleep(receiver.delay_s)
                self.send_response(receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            allow_reuse_address = True
            request_queue_size = 256  # many keep-alive clients connect at once

        self._server = Server(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def events(self, secret: str) -> list[dict[str, Any]]:
        """Every verified CloudEvent received so far, in arrival order."""
        with self._lock:
            return [r.verified(secret) for r in self.received]

    def item_events(self, secret: str) -> list[dict[str, Any]]:
        """The verified item events (test events left out)."""
        return [e for e in self.events(secret) if e["type"].startswith("org.csdr.item.")]

    def wait_for(self, count: int, secret: str, timeout_s: float = 60) -> list[dict[str, Any]]:
        """Wait until `count` distinct deliveries (by webhook-id) arrived; return the verified
        item events among them, one per webhook-id."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len({r.headers.get("webhook-id") for r in self.received}) >= count:
                    break
            time.sleep(0.05)
        return list({e["id"]: e for e in self.item_events(secret)}.values())


def json_body(r: Received) -> dict[str, Any]:
    return dict(json.loads(r.body))
