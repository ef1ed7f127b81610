"""Request ids: each request gets one (the caller's `X-Request-ID`, else a new one), echoed in
the answer's headers and quoted in the log line and the body of a 500, so that an operator finds
the failure a user reports."""

import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
# Where the id is kept in the request state (`request.state.request_id`).
STATE_KEY = "request_id"


def request_id_of(request: Any) -> str:
    """The request's id (set by RequestIdMiddleware; "-" when it did not run)."""
    return str(getattr(request.state, STATE_KEY, "-"))


class RequestIdMiddleware:
    """Give each request an id (the caller's X-Request-ID, else a new one), echoed back."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap `app`."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Store the id in the request state and add it to the response headers."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(REQUEST_ID_HEADER.lower().encode(), b"").decode("latin-1")
        rid = given if 0 < len(given) <= 64 and given.isprintable() else uuid.uuid4().hex
        scope.setdefault("state", {})[STATE_KEY] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw: list[Any] = list(message.get("headers", []))
                if not any(k.lower() == b"x-request-id" for k, _ in raw):
                    raw.append((b"x-request-id", rid.encode("latin-1")))
                message["headers"] = raw
            await send(message)

        await self.app(scope, receive, send_with_id)
