"""ETag and Cache-Control on collection and item documents (`GET /collections`,
`/collections/{id}`, `/collections/{id}/items/{item_id}`), so harvesters and CDNs revalidate with
`If-None-Match` and get 304 instead of the document again (RFC 9110, 8.8.3 and 13.1.2).

A weak ETag over the body: the body is built per request (links carry the request's host), so
the tag is as strong a promise as the bytes allow and needs no database timestamp. Searches and
item pages are not tagged: they page and change with every ingest.
"""

from __future__ import annotations

import hashlib
import re

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response

CACHED_PATHS = re.compile(r"^/collections(/[^/]+(/items/[^/]+)?)?/?$")


class DocumentCacheMiddleware(BaseHTTPMiddleware):
    """Tag collection and item documents; answer 304 when the client's tag still matches."""

    def __init__(self, app: object, max_age_s: int) -> None:
        super().__init__(app)  # type: ignore[arg-type]
        self.cache_control = f"public, max-age={max_age_s}"

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        """Pass the request on; tag a 200 GET of a cached path."""
        response = await call_next(request)
        if (
            request.method != "GET"
            or response.status_code != 200
            or not CACHED_PATHS.match(request.url.path)
        ):
            return response
        body = b"".join([chunk async for chunk in response.body_iterator])  # type: ignore[attr-defined]
        etag = f'W/"{hashlib.blake2b(body, digest_size=16).hexdigest()}"'
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        headers.update({"ETag": etag, "Cache-Control": self.cache_control})
        if etag in request.headers.get("if-none-match", ""):
            headers.pop("content-type", None)
            return Response(status_code=304, headers=headers)
        return Response(body, status_code=200, headers=headers)
