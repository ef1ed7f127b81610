"""Carrying a key given as `?api_key=` into the URLs a service hands back.

QGIS sends no custom headers for XYZ layers, so a partner's key travels in the query; every link
we answer with (next pages, items, tiles, downloads) must carry it again or the next request is
anonymous. Only URLs of this node get it: a key must never leak into a link to someone else's
server (a licence page, a data policy).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]


def with_key(url: str, key: str) -> str:
    """`url` with `api_key=key` in its query (once)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "api_key"]
    # Keep `{z}/{x}/{y}`-style template braces readable, as upstream writes them.
    encoded = urlencode([*query, ("api_key", key)], safe="{}")
    return urlunsplit(parts._replace(query=encoded))


def _origin_and_path(url: str) -> tuple[str, str, str] | None:
    """(scheme, host:port, path ending in `/`) of an absolute http(s) URL; None otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:  # a port that is not a number
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    path = parts.path if parts.path.endswith("/") else f"{parts.path}/"
    return parts.scheme, f"{parts.hostname.lower()}:{port}", path


def is_own(url: str, own: Sequence[str]) -> bool:
    """Whether `url` lies under one of the `own` base URLs: same scheme, host and port (not
    merely the same leading characters: `http://node:80810/` is another server than
    `http://node:8081`), and a path under the base's."""
    target = _origin_and_path(url)
    if target is None:
        return False
    for base in own:
        prefix = _origin_and_path(base)
        if prefix is not None and target[:2] == prefix[:2] and target[2].startswith(prefix[2]):
            return True
    return False


def add_key_to_links(document: Any, key: str, own: Sequence[str]) -> Any:
    """Every `links[].href` and `assets{}.href` in a JSON document under one of the `own` base
    URLs (`is_own`), with the key added; in place, and returned."""

    def carry(holder: Any) -> None:
        href = holder.get("href") if isinstance(holder, dict) else None
        if isinstance(href, str) and is_own(href, own):
            holder["href"] = with_key(href, key)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for name, value in node.items():
                if name == "links" and isinstance(value, list):
                    for link in value:
                        carry(link)
                elif name == "assets" and isinstance(value, dict):
                    for asset in value.values():
                        carry(asset)
                        walk(asset)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    return document


def key_carrying_send(send: Send, key: str, own: Sequence[str]) -> Send:
    """`send`, with the key added to the links of a 200 JSON answer (buffered to rewrite it)."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def send_with_key(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            headers = dict(message.get("headers") or [])
            if message["status"] == 200 and b"json" in headers.get(b"content-type", b""):
                start = message
                return
        if start is None:
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = json.dumps(add_key_to_links(json.loads(b"".join(chunks)), key, own)).encode()
        start["headers"] = [
            (name, value) for name, value in start["headers"] if name.lower() != b"content-length"
        ] + [(b"content-length", str(len(body)).encode())]
        await send(start)
        await send({"type": "http.response.body", "body": body})

    return send_with_key
