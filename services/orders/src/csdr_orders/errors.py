"""Domain errors of orders and the one map from them to HTTP answers `{"code", "description"}`,
plus the problem fields an error carries (the quota's numbers at 403, `expired_at` at 410)."""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from csdr_service import errors as service_errors


class OrdersError(Exception):
    """A request orders cannot honour; `code` is stable, the message says what to fix."""

    code = "OrdersError"
    status = 400
    headers: dict[str, str] | None = None

    def __init__(self, description: str, **fields: Any) -> None:
        super().__init__(description)
        self.fields = fields


class InvalidOrder(OrdersError):
    """The order names no scene, too many, or scenes this node does not have for the caller."""

    code = "InvalidOrder"


class OrderNotFound(OrdersError):
    """No order with that id that the caller's organisation placed."""

    code = "NotFound"
    status = 404


class TransitionRefused(OrdersError):
    """The order's status does not allow the change asked for."""

    code = "Conflict"
    status = 409


class IdempotencyConflict(OrdersError):
    """The Idempotency-Key was used before with a different order."""

    code = "IdempotencyConflict"
    status = 409


class QuotaExceeded(OrdersError):
    """The order would take the organisation past its quota: nothing was created."""

    code = "QuotaExceeded"
    status = 403


class LinkInvalid(OrdersError):
    """A delivery link whose signature does not verify, or used by another organisation."""

    code = "Forbidden"
    status = 403


class LinkExpired(OrdersError):
    """A delivery link past its expiry: renew the order's links."""

    code = "LinkExpired"
    status = 410


def add_exception_handlers(app: FastAPI) -> None:
    """The node's error handlers, and orders' own errors with their status, code and fields."""
    service_errors.add_exception_handlers(app, "orders")

    async def orders_error(request: Request, exc: OrdersError) -> JSONResponse:
        body = {"code": exc.code, "description": str(exc), **exc.fields}
        return JSONResponse(body, exc.status, headers=exc.headers)

    app.add_exception_handler(OrdersError, orders_error)  # type: ignore[arg-type]
