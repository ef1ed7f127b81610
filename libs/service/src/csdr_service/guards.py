"""What every service wraps its routes in, in one order: request ids outermost (every answer,
errors included, carries one), then the input guard (no NUL in URLs), the request time limit,
and FastAPI's body limit (413 before a body is read); around them all, the request metrics and
`/metrics` (csdr_service.metrics). Call it after the service's own middlewares, so that these
sit outside them."""

from __future__ import annotations

from fastapi import FastAPI

from csdr_service.errors import ErrorBody, error_body
from csdr_service.input_guard import InputGuardMiddleware
from csdr_service.metrics import add_metrics
from csdr_service.request_ids import RequestIdMiddleware
from csdr_service.time_limit import TimeLimitMiddleware


def add_guards(
    app: FastAPI,
    request_timeout_s: float,
    max_body_bytes: int,
    body: ErrorBody = error_body,
) -> None:
    """Install the guards on `app`; `body` shapes their errors as the service's."""
    app.max_body_size = max_body_bytes
    app.add_middleware(TimeLimitMiddleware, seconds=request_timeout_s, error_body=body)
    app.add_middleware(InputGuardMiddleware, error_body=body)
    app.add_middleware(RequestIdMiddleware)
    add_metrics(app)
