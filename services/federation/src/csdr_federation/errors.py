"""Domain errors of federation and the one map from them to HTTP answers
`{"code", "description"}` (410 adds `"reconcile": true`)."""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from csdr_service import errors as service_errors
from csdr_service.errors import error_response


class FederationError(Exception):
    """A request federation cannot honour; `code` is stable, the message says what to fix."""

    code = "FederationError"
    status = 400
    headers: dict[str, str] | None = None
    extra: dict[str, Any] = {}


class InvalidParameter(FederationError):
    """A query parameter is wrong: the message names it and the problem."""

    code = "InvalidParameter"


class CursorExpired(FederationError):
    """The cursor lies before the oldest retained event: the reader must reconcile."""

    code = "CursorExpired"
    status = 410
    extra = {"reconcile": True}


def add_exception_handlers(app: FastAPI) -> None:
    """The node's error handlers, and federation's own errors with their status and code."""
    service_errors.add_exception_handlers(app, "federation")

    async def federation_error(request: Request, exc: FederationError) -> JSONResponse:
        response = error_response(exc.status, exc.code, str(exc), exc.headers)
        if exc.extra:
            body = {"code": exc.code, "description": str(exc), **exc.extra}
            return JSONResponse(body, exc.status, headers=exc.headers)
        return response

    app.add_exception_handler(FederationError, federation_error)  # type: ignore[arg-type]
