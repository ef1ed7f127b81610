"""Discovery's hop to the STAC API against a real HTTP/1.1 peer on 127.0.0.1 that behaves as
servers do: keeps connections alive, closes an idle one, sends chunked bodies, stalls."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from csdr_discovery.stac_api import CatalogUnavailable, StacApiClient

Handler = Callable[[bytes, asyncio.StreamWriter, int], Awaitable[bool]]


def response(body: bytes, close: bool = False) -> bytes:
    connection = b"close" if close else b"keep-alive"
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: " + connection
        + b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip


async def serve(handler: Handler) -> tuple[asyncio.Server, str, list[int]]:
    """A server answering each request with `handler(request head, writer, number of the
    request on its connection)`; the handler returns False to close the connection. Also
    gives the connection number of each request."""
    seen: list[int] = []
    connections = 0

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        number = connections
        try:
            for n in range(1_000):
                head = await reader.readuntil(b"\r\n\r\n")
                seen.append(number)
                if not await handler(head, writer, n):
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}", seen


def test_connections_are_kept_and_links_name_the_public_url() -> None:
    heads: list[bytes] = []

    async def echo(head: bytes, writer: asyncio.StreamWriter, n: int) -> bool:
        heads.append(head)
        writer.write(response(b'{"ok": true}'))
        return True

    async def run() -> list[int]:
        server, url, seen = await serve(echo)
        client = StacApiClient(url + "/stac", "https://node.example/stac", timeout_s=5)
        try:
            for _ in range(3):
                answer = await client.get("/search?limit=1")
                assert (answer.status, answer.body) == (200, b'{"ok": true}')
        finally:
            await client.aclose()
            server.close()
        return seen

    assert asyncio.run(run()) == [1, 1, 1]  # one connection for all three requests
    assert heads[0].startswith(b"GET /stac/search?limit=1 HTTP/1.1\r\n")
    assert b"Forwarded: proto=https;host=node.example\r\n" in heads[0]
    assert b"Accept-Encoding: identity\r\n" in heads[0]


def test_a_connection_the_server_closed_is_replaced() -> None:
    async def once(head: bytes, writer: asyncio.StreamWriter, n: int) -> bool:
        # Says keep-alive, then closes: what a server's keep-alive timeout does meanwhile.
        writer.write(response(b"[]"))
        return False

    async def second_unanswered(head: bytes, writer: asyncio.StreamWriter, n: int) -> bool:
        # The close crosses the next request on the wire: it goes unanswered.
        if n == 0:
            writer.write(response(b"[]"))
        return n == 0

    async def run(handler: Handler, pause_s: float) -> list[int]:
        server, url, seen = await serve(handler)
        client = StacApiClient(url, url, timeout_s=5)
        try:
            for _ in range(3):
                assert (await client.get("/search")).body == b"[]"
                await asyncio.sleep(pause_s)
        finally:
            await client.aclose()
            server.close()
        return seen

    assert asyncio.run(run(once, 0.05)) == [1, 2, 3]  # seen closed: not reused
    # Reused, found closed before any answer, sent again on a new connection.
    assert asyncio.run(run(second_unanswered, 0)) == [1, 1, 2, 2, 3]


def test_chunked_bodies_and_closing_responses() -> None:
    async def chunked(head: bytes, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            b'5\r\n{"a":\r\n3\r\n 1}\r\n0\r\n\r\n'
        )
        return True

    async def closing(head: bytes, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(response(b"{}", close=True))
        return False

    async def run() -> None:
        for handler, body in ((chunked, b'{"a": 1}'), (closing, b"{}")):
            server, url, _ = await serve(handler)
            client = StacApiClient(url, url, timeout_s=5)
            try:
                assert (await client.get("/")).body == body
                assert (await client.get("/")).body == body
            finally:
                await client.aclose()
                server.close()

    asyncio.run(run())


def test_a_stalled_or_absent_server_is_unavailable() -> None:
    async def stall(head: bytes, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{")
        await asyncio.sleep(5)
        return False

    async def run() -> None:
        server, url, _ = await serve(stall)
        client = StacApiClient(url, url, timeout_s=0.3)
        try:
            with pytest.raises(CatalogUnavailable) as stalled:
                await client.get("/")
            assert stalled.value.timed_out
        finally:
            await client.aclose()
            server.close()
        with pytest.raises(CatalogUnavailable) as absent:
            await StacApiClient(url, url, timeout_s=2).get("/")  # nobody listens any more
        assert not absent.value.timed_out

    asyncio.run(run())
