"""A webhook receiver for benchmarks, run as its own process: a bare asyncio HTTP/1.1 server on
127.0.0.1 that keeps connections alive, answers every POST with 204 at once and only records it
(arrival time, head, body). Nothing is parsed or verified on the hot path: the benchmark fetches
the records afterwards and verifies them there. The test receiver in services/push/tests (an
http.server in the test process, ~100 requests/s) would measure itself, not push.

Control requests on the same port: `GET /count` (requests recorded), `GET /records` (a pickle of
`[(arrival unix time, head bytes, body bytes), ...]`), `POST /reset` (forget them).

Run: `python tests/bench/fast_receiver.py PORT`; `Receiver` below does that for a test."""

from __future__ import annotations

import asyncio
import pickle
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.parser import BytesHeaderParser
from typing import Any

import httpx
from standardwebhooks import Webhook

NO_CONTENT = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"
MAX_HEAD = 64 * 1024

Record = tuple[float, bytes, bytes]


def reply(body: bytes, content_type: bytes = b"application/octet-stream") -> bytes:
    """A 200 response carrying `body`."""
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n"
        % (content_type, len(body))
        + body
    )


class Connection(asyncio.Protocol):
    """One keep-alive connection: split the byte stream into requests by content-length."""

    def __init__(self, records: list[Record]) -> None:
        self.records = records
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self.transport.close()
                return
            head = self.buffer[:end]
            length = content_length(head)
            if len(self.buffer) < end + 4 + length:
                return  # the rest of the body is still on its way
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self.transport.write(self.answer(head, body))

    def answer(self, head: bytes, body: bytes) -> bytes:
        """Record a POST and answer 204; serve the control requests."""
        request_line = head.split(b"\r\n", 1)[0]
        if request_line.startswith(b"POST ") and not request_line.startswith(b"POST /reset "):
            self.records.append((time.time(), head, body))
            return NO_CONTENT
        if request_line.startswith(b"GET /count "):
            return reply(b"%d" % len(self.records), b"text/plain")
        if request_line.startswith(b"GET /records "):
            return reply(pickle.dumps(self.records))
        self.records.clear()  # POST /reset
        return NO_CONTENT


def content_length(head: bytes) -> int:
    """The request's content-length (0 when it has none)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


async def serve(port: int) -> None:
    """Serve on 127.0.0.1:`port` until killed."""
    records: list[Record] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Connection(records), "127.0.0.1", port, backlog=1024, reuse_address=True
    )
    async with server:
        await server.serve_forever()


class Received:
    """One recorded request: its arrival time, headers and body."""

    def __init__(self, record: Record) -> None:
        self.at, head, self.body = record
        fields = BytesHeaderParser().parsebytes(head.split(b"\r\n", 1)[1] + b"\r\n\r\n")
        self.headers = {k.lower(): v for k, v in fields.items()}

    def verified(self, secret: str) -> dict[str, Any]:
        """The CloudEvent, after its Standard Webhooks signature verified (raises otherwise)."""
        return dict(Webhook(secret).verify(self.body, self.headers))


class Receiver:
    """The receiver process, seen from the benchmark."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/hook"
        self.control = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

    def count(self) -> int:
        """Requests recorded so far."""
        return int(self.control.get("/count").text)

    def wait_for(self, count: int, timeout_s: float) -> int:
        """Wait (at most timeout_s) until `count` requests arrived; return how many did."""
        deadline = time.monotonic() + timeout_s
        while (seen := self.count()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return seen

    def received(self) -> list[Received]:
        """Every recorded request, in arrival order."""
        return [Received(r) for r in pickle.loads(self.control.get("/records").content)]

    def reset(self) -> None:
        """Forget the recorded requests."""
        self.control.post("/reset").raise_for_status()


@contextmanager
def receiver_process(port: int, timeout_s: float = 10) -> Iterator[Receiver]:
    """Run the receiver in its own process on 127.0.0.1:`port`; stop it afterwards."""
    proc = subprocess.Popen([sys.executable, __file__, str(port)])
    receiver = Receiver(port)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                receiver.count()
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the receiver did not start on port {port}") from None
                time.sleep(0.05)
        yield receiver
    finally:
        receiver.control.close()
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
