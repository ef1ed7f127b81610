"""The error shape of the node's own APIs: `{"code", "description"}`, never a traceback.

Registered by ingest and push (the catalog answers in STAC's flavour of the same shape, the tiler
in titiler's `{"detail"}`): an HTTPException keeps its status and headers with the status phrase
as code; a request that does not validate is a 400 naming each field; anything unexpected is a
500 whose cause goes to the log under the request id (csdr_service.request_ids), not to the
client. The catalog registers `http_error` and `log_unexpected` with its own STAC codes."""

import logging
from collections.abc import Mapping
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from csdr_service.request_ids import REQUEST_ID_HEADER, request_id_of

logger = logging.getLogger(__name__)


def error_response(
    status: int, code: str, description: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """An error answer in the node's shape."""
    return JSONResponse({"code": code, "description": description}, status, headers=headers)


def describe_validation_error(exc: RequestValidationError) -> str:
    """`field.sub: problem; ...` for each problem, the field's path without `body`/`query`."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()
    )


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    """An HTTPException with its status and headers, the status phrase as code."""
    assert isinstance(exc, HTTPException)
    code = HTTPStatus(exc.status_code).phrase.replace(" ", "")
    return error_response(exc.status_code, code, str(exc.detail), exc.headers)


def log_unexpected(request: Request, exc: Exception) -> str:
    """Log an unexpected failure with its traceback under the request's id; the id."""
    rid = request_id_of(request)
    logger.error(
        "unexpected error on %s %s (request %s)",
        request.method,
        request.url.path,
        rid,
        exc_info=exc,
    )
    return rid


def add_exception_handlers(app: FastAPI, service: str) -> None:
    """Register the three handlers; `service` names the log an operator should read on a 500."""

    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, "InvalidRequest", describe_validation_error(exc))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        rid = log_unexpected(request, exc)
        return error_response(
            500,
            "InternalError",
            f"unexpected failure; see the {service} log (request {rid})",
            {REQUEST_ID_HEADER: rid},
        )

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected)
