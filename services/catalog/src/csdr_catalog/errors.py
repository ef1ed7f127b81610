"""Every error the catalog answers has the STAC API shape `{"code", "description"}`.

stac-fastapi maps its own exceptions (`NotFoundError`, `InvalidQueryParameter`, ...) to that shape
already; these handlers cover the rest: request validation (upstream answers 400 with pydantic's
`{"detail": [...]}`), `HTTPException`s raised by upstream code (`{"detail": "..."}`), and anything
unexpected (500 with a request id to find in the log, never the exception's text).
"""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from csdr_service.errors import (
    database_unavailable,
    error_response,
    http_error,
    log_unexpected,
    refused_value,
    unavailable_response,
)
from csdr_service.request_ids import REQUEST_ID_HEADER


def stac_error(status: int, code: str, description: str) -> JSONResponse:
    """A STAC API error response."""
    return error_response(status, code, description)


def _where(loc: tuple[object, ...]) -> str:
    """`('body', 'bbox', 'tuple[...]')` -> `bbox`: the parameter, not pydantic's type path."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return parts[0] if parts else "request"


def describe_validation_error(exc: RequestValidationError) -> str:
    """One sentence per distinct problem, each naming the parameter."""
    seen: dict[str, str] = {}
    for error in exc.errors():
        where = _where(tuple(error.get("loc", ())))
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        seen.setdefault(where, f"{where}: {message}")
    return "; ".join(seen.values()) or "invalid request"


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """400 for a request that does not fit the search model."""
    assert isinstance(exc, RequestValidationError)
    return stac_error(400, "BadRequest", describe_validation_error(exc))


async def invalid_json(request: Request, exc: Exception) -> JSONResponse:
    """400 for a parameter upstream reads as JSON (`query`, `intersects`) that is not JSON."""
    return stac_error(400, "BadRequest", f"a parameter is not valid JSON: {exc}")


async def invalid_model(request: Request, exc: Exception) -> JSONResponse:
    """400 for parameters upstream turns into its search model after FastAPI's validation (GET
    /aggregate, GET /collections): each problem with the parameter it is about."""
    assert isinstance(exc, ValidationError)
    problems = {
        str(e["loc"][0]) if e.get("loc") else "request": str(e.get("msg", "invalid"))
        for e in exc.errors()
    }
    return stac_error(400, "BadRequest", "; ".join(f"{k}: {v}" for k, v in problems.items()))


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """500 with the request id; the exception goes to the log, not to the client (a value the
    database refused is the client's: 400 naming it)."""
    if refused := refused_value(exc):
        return stac_error(400, "BadRequest", refused)
    if database_unavailable(exc):
        return unavailable_response()
    rid = log_unexpected(request, exc)
    return error_response(
        500, "InternalServerError", f"internal error; request id {rid}", {REQUEST_ID_HEADER: rid}
    )


def install(app: FastAPI) -> None:
    """Register the handlers, replacing upstream's for the same exception types."""
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(json.JSONDecodeError, invalid_json)
    app.add_exception_handler(ValidationError, invalid_model)
    app.add_exception_handler(Exception, unexpected_error)
