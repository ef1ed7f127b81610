"""The one hop from discovery to the node's STAC API: GET requests over a small pool of
persistent HTTP/1.1 connections, responses parsed by httptools (uvicorn's parser), bodies
uncompressed. Links in the answers name the catalog's public URL: the request carries it in a
`Forwarded` header, which the catalog's ProxyHeaderMiddleware reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httptools

# Below uvicorn's default keep-alive timeout (5 s): an idle connection older than this may be
# closing on the server's side, so it is dropped rather than reused.
IDLE_S = 4.0
READ_BYTES = 256 * 1024


class CatalogUnavailable(Exception):
    """The STAC API could not be reached or gave no complete answer in time."""

    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


@dataclass
class Answer:
    """A response: status, the headers discovery reads, body."""

    status: int
    body: bytes
    content_encoding: str = ""


@dataclass
class _Message:
    """httptools callbacks: collect the body and note the end of the message."""

    chunks: list[bytes] = field(default_factory=list)
    began: bool = False
    done: bool = False
    content_encoding: str = ""
    keep_alive: bool = False
    parser: httptools.HttpResponseParser | None = None

    def on_message_begin(self) -> None:
        self.began = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-encoding":
            self.content_encoding = value.decode("latin-1").strip().lower()

    def on_headers_complete(self) -> None:
        # Asked here: once the message is complete the parser has reset and answers False.
        assert self.parser is not None
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.done = True


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    used: float

    def close(self) -> None:
        self.writer.close()


class StacApiClient:
    """GET `path?query` of the STAC API at `api_url`, with links built for `public_url`."""

    def __init__(self, api_url: str, public_url: str, timeout_s: float, keep: int = 8) -> None:
        api, public = urlsplit(api_url.rstrip("/")), urlsplit(public_url.rstrip("/"))
        if api.scheme not in ("http", "https") or not api.hostname:
            raise ValueError(f"the STAC API URL must be http(s)://host[:port][/path]: {api_url}")
        self.host = api.hostname
        self.port = api.port or (443 if api.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if api.scheme == "https" else None
        self.prefix = api.path
        self.timeout_s = timeout_s
        self.keep = keep
        # The catalog builds its links from the Host it sees; tell it the public one.
        forwarded = f"proto={public.scheme or api.scheme};host={public.netloc or api.netloc}"
        self.head = (
            f"Host: {api.netloc}\r\nForwarded: {forwarded}\r\n"
            "Accept: application/geo+json, application/json\r\nAccept-Encoding: identity\r\n"
            "User-Agent: csdr-discovery\r\n\r\n"
        ).encode("latin-1")
        self.idle: list[_Connection] = []

    async def get(self, path_and_query: str) -> Answer:
        """The STAC API's answer to a GET (of any status); CatalogUnavailable when there is
        none within the timeout. A reused connection the server has closed is retried once on
        a new one (a GET is safe to send again)."""
        request = f"GET {self.prefix}{path_and_query} HTTP/1.1\r\n".encode("latin-1") + self.head
        try:
            async with asyncio.timeout(self.timeout_s):
                conn = self._reusable()
                if conn is not None:
                    try:
                        return await self._exchange(conn, request)
                    except _Closed:
                        pass
                return await self._exchange(await self._open(), request)
        except TimeoutError as exc:
            raise CatalogUnavailable("the STAC API did not answer in time", True) from exc
        except (OSError, _Closed, httptools.HttpParserError) as exc:
            raise CatalogUnavailable(f"the STAC API gave no answer: {exc!r}") from exc

    def _reusable(self) -> _Connection | None:
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()
            if now - conn.used < IDLE_S and not conn.reader.at_eof():
                return conn
            conn.close()
        return None

    async def _open(self) -> _Connection:
        reader, writer = await asyncio.open_connection(
            self.host, self.port, ssl=self.ssl, limit=READ_BYTES
        )
        return _Connection(reader, writer, time.monotonic())

    async def _exchange(self, conn: _Connection, request: bytes) -> Answer:
        message = _Message()
        parser = message.parser = httptools.HttpResponseParser(message)
        try:
            conn.writer.write(request)
            while not message.done:
                data = await conn.reader.read(READ_BYTES)
                if not data:
                    # The STAC API (uvicorn) frames every body by length or chunks: an answer
                    # is whole only when the parser says so, never at the end of the stream.
                    raise _Closed("the connection closed before a whole response")
                parser.feed_data(data)
        except (OSError, _Closed):
            conn.close()
            if message.began:
                raise CatalogUnavailable("the STAC API's answer broke off") from None
            raise _Closed("the connection closed before a response") from None
        except BaseException:
            conn.close()  # cancelled or timed out mid-answer: the stream is out of step
            raise
        if message.keep_alive and len(self.idle) < self.keep:
            conn.used = time.monotonic()
            self.idle.append(conn)
        else:
            conn.close()
        return Answer(parser.get_status_code(), b"".join(message.chunks), message.content_encoding)

    async def aclose(self) -> None:
        """Close the idle connections."""
        while self.idle:
            conn = self.idle.pop()
            conn.close()
            with contextlib.suppress(OSError):
                await conn.writer.wait_closed()


class _Closed(Exception):
    """The connection ended before any of the response arrived."""
