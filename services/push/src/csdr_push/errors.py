"""Domain errors of push and the one map from them to HTTP answers `{"code", "description"}`."""

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)


class PushError(Exception):
    """A request push cannot honour; `code` is stable, the message says what to fix."""

    code = "PushError"
    status = 400
    headers: dict[str, str] | None = None


class InvalidSubscription(PushError):
    """A subscription field is wrong: the message names the field and the problem."""

    code = "InvalidSubscription"


class InvalidFilter(InvalidSubscription):
    """The CQL2 filter does not parse, validate or compile."""

    code = "InvalidFilter"


class InvalidWebhook(InvalidSubscription):
    """The webhook URL or secret cannot be used."""

    code = "InvalidWebhook"


class Unauthorized(PushError):
    """No API key, or one that is malformed, unknown, revoked or expired."""

    code = "Unauthorized"
    status = 401
    headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(PushError):
    """A valid API key without the scope this request needs."""

    code = "Forbidden"
    status = 403


class SubscriptionNotFound(PushError):
    """No subscription with that id that the caller's organisation owns."""

    code = "NotFound"
    status = 404


def add_exception_handlers(app: FastAPI) -> None:
    """Answer every API error as `{"code", "description"}`; bad requests are 400, not 422."""

    async def push_error(request: Request, exc: PushError) -> JSONResponse:
        return JSONResponse(
            {"code": exc.code, "description": str(exc)}, exc.status, headers=exc.headers
        )

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTPStatus(exc.status_code).phrase.replace(" ", "")
        return JSONResponse({"code": code, "description": str(exc.detail)}, exc.status_code)

    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return JSONResponse({"code": "InvalidRequest", "description": problems}, 400)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"code": "InternalError", "description": "unexpected failure; see the push log"}, 500
        )

    app.add_exception_handler(PushError, push_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected)
