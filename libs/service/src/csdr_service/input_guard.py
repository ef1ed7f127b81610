"""Input no service can store or match: refused before routing, the same way everywhere.

A NUL character (`%00`) in a path or query string cannot be stored in PostgreSQL text nor
matched against it; it reaches a query as a database error. Such a request is a 400 naming it.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from csdr_service.errors import ErrorBody
from csdr_service.errors import error_body as node_error

NUL_MESSAGE = "the URL contains a NUL character (%00), which no parameter may hold"


class InputGuardMiddleware:
    """400 for a URL holding a NUL character."""

    def __init__(
        self,
        app: ASGIApp,
        error_body: ErrorBody = node_error,
    ) -> None:
        """Wrap `app`; `error_body` shapes the 400 as the service's other errors."""
        self.app = app
        self.error_body = error_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse the request or pass it on."""
        if scope["type"] == "http":
            query: bytes = scope.get("query_string", b"")
            if "\x00" in scope["path"] or b"%00" in query or b"\x00" in query:
                body = self.error_body("InvalidRequest", NUL_MESSAGE)
                await JSONResponse(body, status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)
