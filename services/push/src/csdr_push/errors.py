"""Domain errors of push and the one map from them to HTTP answers `{"code", "description"}`."""

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from csdr_service import errors as service_errors
from csdr_service.errors import error_response


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


class SubscriptionNotFound(PushError):
    """No subscription with that id that the caller's organisation owns."""

    code = "NotFound"
    status = 404


def add_exception_handlers(app: FastAPI) -> None:
    """The node's error handlers, and push's own errors with their status and code."""
    service_errors.add_exception_handlers(app, "push")

    async def push_error(request: Request, exc: PushError) -> JSONResponse:
        return error_response(exc.status, exc.code, str(exc), exc.headers)

    app.add_exception_handler(PushError, push_error)  # type: ignore[arg-type]
