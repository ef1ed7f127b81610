"""The error shape of the node's own APIs: `{"code", "description"}`, never a traceback.

Registered by ingest and push (the catalog answers in STAC's flavour of the same shape, the tiler
in titiler's `{"detail"}`): an HTTPException keeps its status and headers with the status phrase
as code; a request that does not validate is a 400 naming each field; anything unexpected is a
500 whose cause goes to the log under the request id (csdr_service.request_ids), not to the
client. The catalog registers `http_error` and `log_unexpected` with its own STAC codes."""

import asyncio
import errno
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any, TypeVar

import asyncpg
import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException

from csdr_service.request_ids import REQUEST_ID_HEADER, request_id_of

logger = logging.getLogger(__name__)

T = TypeVar("T")


ErrorBody = Callable[[str, str], dict[str, Any]]
"""(code, description) -> the JSON body of an error answer, in a service's shape."""


def error_body(code: str, description: str) -> dict[str, Any]:
    """The node's error shape, `{"code", "description"}`."""
    return {"code": code, "description": description}


def detail_body(code: str, description: str) -> dict[str, Any]:
    """titiler's error shape, `{"detail"}` (the tiler's)."""
    return {"detail": description}


def unavailable_response(body: ErrorBody = error_body) -> JSONResponse:
    """503 for a database that cannot be reached, in a service's error shape."""
    return JSONResponse(
        body("ServiceUnavailable", UNAVAILABLE),
        503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def error_response(
    status: int, code: str, description: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """An error answer in the node's shape."""
    return JSONResponse(error_body(code, description), status, headers=headers)


def refused_value(exc: BaseException) -> str | None:
    """What the database refused, when `exc` is its refusal of input a client sent, else None:
    a value it cannot hold (SQLSTATE class 22: a number out of range, `\u0000`, text malformed
    for its type), a check a function RAISEs on (P0001: pgSTAC refuses a negative offset, an
    empty property name, `query` with `filter`), or free text no tsquery can be made of.
    psycopg's and asyncpg's errors both carry `sqlstate`; an upstream error raised from one
    (titiler-pgstac's BackendError) is judged by its cause."""
    while exc is not None and not isinstance(getattr(exc, "sqlstate", None), str):
        exc = exc.__cause__  # type: ignore[assignment]
    if exc is None:
        return None
    sqlstate: str = exc.sqlstate  # type: ignore[attr-defined]
    text = str(exc).strip()
    first = text.splitlines()[0] if text else sqlstate
    if sqlstate.startswith("22"):
        return f"the database refused a value: {first}"
    if sqlstate == "P0001":
        return first
    if sqlstate == "42601" and "tsquery" in first:
        return f"q is not a free-text query PostgreSQL can read: {first}"
    return None


# SQLSTATEs of a server that is gone or not accepting connections: class 08 (connection
# exception), 57P01-57P03 (admin shutdown, crash shutdown, cannot connect now).
UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03")
UNREACHABLE_ERRNOS = (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT)
UNAVAILABLE = "the database is unavailable; retry later"
RETRY_AFTER_S = 5


def database_unavailable(exc: BaseException | None) -> bool:
    """True when `exc` (or an exception it was raised from) says the database cannot be
    reached: refused or dropped connections, a pool that waited too long for one, a server
    shutting down. Answered 503 with Retry-After, never a 500 or a hang."""
    seen = 0
    while exc is not None and seen < 8:
        sqlstate = getattr(exc, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(UNAVAILABLE_SQLSTATES):
            return True
        if isinstance(exc, ConnectionError | TimeoutError | PoolTimeout):
            return True
        if isinstance(exc, psycopg.OperationalError) and sqlstate is None:
            return True  # psycopg's own: the connection failed or was lost
        if isinstance(exc, asyncpg.exceptions.InterfaceError | asyncpg.ConnectionDoesNotExistError):
            return True
        if isinstance(exc, asyncpg.exceptions.InternalClientError):
            # A pooled connection the server dropped mid-query can leave asyncpg's protocol
            # mid-operation ("cannot switch to state 12; another operation (2) is in progress",
            # MagicStack/asyncpg#1069); the pool discards it.
            return True
        if isinstance(exc, OSError) and exc.errno in UNREACHABLE_ERRNOS:
            return True  # connecting to a host that is down
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


# A transaction that lost to another: deadlock detected, serialization failure.
CONFLICT_SQLSTATES = ("40P01", "40001")


def write_conflict(exc: BaseException) -> bool:
    """True when a write failed only because a concurrent one won, so running it again is
    right: a deadlock or serialization failure, or pgSTAC's form of a deadlock. Creating a
    partition locks `items` then `collections`, the reverse of a writer that changed a
    collection before its items (federation's page of changes); pgSTAC's check_partition
    catches the deadlock, logs it at INFO and goes on to fail with "relation
    \"_items_N_YYYY\" does not exist" (42P01). psycopg's and asyncpg's errors both carry
    `sqlstate`."""
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate in CONFLICT_SQLSTATES:
        return True
    return sqlstate == "42P01" and 'relation "_items_' in str(exc)


CONFLICT_ATTEMPTS = 4


def _after_conflict(exc: Exception, attempt: int, attempts: int, what: str) -> float:
    """How long to wait before running `what` again after `exc`; raise `exc` when it is not a
    write conflict or the attempts are spent."""
    if attempt == attempts or not write_conflict(exc):
        raise exc
    logger.warning("%s lost to a concurrent write; again", what)
    return random.uniform(0.05, 0.25) * attempt


def run_again_on_conflict(run: Callable[[], T], what: str, attempts: int = CONFLICT_ATTEMPTS) -> T:
    """`run()` (a whole transaction), run again after a short random pause while it loses to a
    concurrent write (write_conflict), at most `attempts` times."""
    attempt = 1
    while True:
        try:
            return run()
        except Exception as exc:
            time.sleep(_after_conflict(exc, attempt, attempts, what))
        attempt += 1


async def run_again_on_conflict_async(
    run: Callable[[], Awaitable[T]], what: str, attempts: int = CONFLICT_ATTEMPTS
) -> T:
    """run_again_on_conflict for a coroutine."""
    attempt = 1
    while True:
        try:
            return await run()
        except Exception as exc:
            await asyncio.sleep(_after_conflict(exc, attempt, attempts, what))
        attempt += 1


def log_retry(log: logging.Logger, what: str, exc: Exception) -> None:
    """Log a failed step of a background loop that goes on (loops catch every Exception: one
    that escaped would end the loop silently): a warning when the database went away, the
    traceback for anything else."""
    if database_unavailable(exc) or isinstance(exc, OSError | asyncpg.PostgresError):
        log.warning("%s (retrying): %r", what, exc)
    else:
        log.exception("%s (retrying)", what)


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
        if refused := refused_value(exc):
            return error_response(400, "InvalidRequest", refused)
        if database_unavailable(exc):
            return unavailable_response()
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
