"""The server-side time limit of every request.

A request whose response has not started within the limit is answered 503 with `Retry-After`
and abandoned: its coroutine is cancelled, and whatever it still sends is dropped. Work it had
handed to a thread (a raster read, a blocking query) runs to its end there, unseen; the limit
keeps the client and the proxy from waiting on it. A response that has started (a download
streaming) is never cut.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from csdr_service.errors import ErrorBody
from csdr_service.errors import error_body as node_error

logger = logging.getLogger(__name__)


class TimeLimitMiddleware:
    """503 for a request not answered within `seconds` (0: no limit)."""

    def __init__(
        self,
        app: ASGIApp,
        seconds: float,
        error_body: ErrorBody = node_error,
    ) -> None:
        """Wrap `app`; `error_body` shapes the 503 as the service's other errors."""
        self.app = app
        self.seconds = seconds
        self.error_body = error_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request; answer 503 in its place if it has not started answering in time."""
        if scope["type"] != "http" or self.seconds <= 0:
            await self.app(scope, receive, send)
            return
        started = asyncio.Event()
        abandoned = False

        async def guarded_send(message: Message) -> None:
            if abandoned:
                return
            if message["type"] == "http.response.start":
                started.set()
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, guarded_send))
        waiter = asyncio.ensure_future(started.wait())
        await asyncio.wait(
            {task, waiter}, timeout=self.seconds, return_when=asyncio.FIRST_COMPLETED
        )
        if task.done() or started.is_set():
            waiter.cancel()
            await task  # its outcome, errors included, as if unwrapped
            return
        abandoned = True
        waiter.cancel()
        task.cancel()
        task.add_done_callback(_forget)
        logger.warning(
            "%s %s not answered within %s s: 503", scope["method"], scope["path"], self.seconds
        )
        message = (
            f"the request was not answered within {self.seconds:g} s, the node's limit; "
            "try a smaller request or again later"
        )
        response = JSONResponse(
            self.error_body("RequestTimeout", message),
            status_code=503,
            headers={"Retry-After": "5"},
        )
        await response(scope, receive, send)


def _forget(task: asyncio.Future[Any]) -> None:
    """Collect an abandoned request's outcome, so that nothing is reported as never retrieved."""
    if not task.cancelled():
        task.exception()
