"""The tiler's one exception-to-status map; a server error quotes the request id
(csdr_service.request_ids) to find it in the log.

titiler's `add_exception_handlers` answers every mapped exception with `str(exc)`, which for a
GDAL or database error carries file paths and SQL. Here client errors (whose messages name the
bad input) keep their message; everything else answers a fixed message with the request id, and
the detail goes to the log under that id.
"""

import logging

from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from morecantile.errors import InvalidZoomError, MorecantileError
from pydantic import ValidationError
from rasterio.errors import RasterioError
from rio_tiler.errors import (
    EmptyMosaicError,
    InvalidAssetName,
    InvalidBandName,
    InvalidColorFormat,
    InvalidColorMapName,
    InvalidExpression,
    InvalidFormat,
    MissingAssets,
    MissingBands,
    NoAssetFoundError,
    RioTilerError,
    TileOutsideBounds,
)
from starlette import status
from starlette.requests import Request
from titiler.core.errors import BadRequestError, TileNotFoundError
from titiler.pgstac.errors import MosaicNotFoundError, NoLayerFound

from csdr_service.errors import (
    database_unavailable,
    detail_body,
    refused_value,
    unavailable_response,
)
from csdr_service.request_ids import REQUEST_ID_HEADER, request_id_of
from csdr_tiler.datasets import RemoteAssetUnavailable
from csdr_tiler.items import CollectionNotFound, ItemNotFound, SearchNotFound

logger = logging.getLogger(__name__)

# Errors about the request itself: their messages name the bad input and no server internals.
CLIENT_ERRORS: dict[type[Exception], int] = {
    ItemNotFound: status.HTTP_404_NOT_FOUND,
    CollectionNotFound: status.HTTP_404_NOT_FOUND,
    SearchNotFound: status.HTTP_404_NOT_FOUND,
    MosaicNotFoundError: status.HTTP_404_NOT_FOUND,
    TileOutsideBounds: status.HTTP_404_NOT_FOUND,
    TileNotFoundError: status.HTTP_404_NOT_FOUND,
    InvalidAssetName: status.HTTP_404_NOT_FOUND,
    InvalidZoomError: status.HTTP_400_BAD_REQUEST,
    MorecantileError: status.HTTP_400_BAD_REQUEST,
    InvalidBandName: status.HTTP_400_BAD_REQUEST,
    InvalidExpression: status.HTTP_400_BAD_REQUEST,
    MissingBands: status.HTTP_400_BAD_REQUEST,
    MissingAssets: status.HTTP_400_BAD_REQUEST,
    InvalidColorFormat: status.HTTP_400_BAD_REQUEST,
    InvalidColorMapName: status.HTTP_400_BAD_REQUEST,
    InvalidFormat: status.HTTP_400_BAD_REQUEST,
    BadRequestError: status.HTTP_400_BAD_REQUEST,
    NoLayerFound: status.HTTP_400_BAD_REQUEST,
    ValidationError: status.HTTP_422_UNPROCESSABLE_CONTENT,
}
# A mosaic with no scene where the tile is: nothing to draw, not an error (QGIS draws nothing).
EMPTY = (EmptyMosaicError, NoAssetFoundError)
# Server-side failures: a fixed message; the exception is logged with the request id.
SERVER_ERRORS: dict[type[Exception], str] = {
    RasterioError: "reading the imagery failed",
    RioTilerError: "rendering the imagery failed",
    Exception: "internal error",
}
# A remote asset's server that cannot be read may come back: ask again after this long.
REMOTE_RETRY_AFTER_S = 30


def client_error(request: Request, exc: Exception) -> Response:
    """The mapped status with the exception's message, which names the bad input."""
    code = next(c for t, c in CLIENT_ERRORS.items() if isinstance(exc, t))
    return JSONResponse({"detail": str(exc)}, status_code=code)


def remote_unavailable(request: Request, exc: Exception) -> Response:
    """503 with Retry-After: a remote asset's server is down or failing (logged, not a bug)."""
    logger.warning("%s %s: %s (%r)", request.method, request.url.path, exc, exc.__cause__)
    return JSONResponse(
        {"detail": str(exc)},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(REMOTE_RETRY_AFTER_S)},
    )


def empty_tile(request: Request, exc: Exception) -> Response:
    """204: the mosaic has no scene there."""
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def server_error(request: Request, exc: Exception) -> Response:
    """500 with a safe message and the request id; the detail goes to the log only (a value the
    database refused is the client's: 400 naming it)."""
    if refused := refused_value(exc):
        return JSONResponse({"detail": refused}, status_code=status.HTTP_400_BAD_REQUEST)
    if database_unavailable(exc):
        return unavailable_response(detail_body)
    rid = request_id_of(request)
    message = next(m for t, m in SERVER_ERRORS.items() if isinstance(exc, t))
    logger.error(
        "%s %s failed (request %s): %r", request.method, request.url.path, rid, exc, exc_info=exc
    )
    return JSONResponse(
        {"detail": f"{message}; quote request id {rid} to the node's operators"},
        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
        headers={REQUEST_ID_HEADER: rid},
    )


def http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's HTTPException, with its headers (a 304 carries its ETag and no body)."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == status.HTTP_304_NOT_MODIFIED:
        return Response(status_code=exc.status_code, headers=exc.headers)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def validation_error(request: Request, exc: Exception) -> Response:
    """422 naming each invalid parameter and why."""
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    return JSONResponse({"detail": errors}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def add_exception_handlers(app: FastAPI) -> None:
    """Install the map: client errors, empty mosaics, HTTP errors and safe server errors."""
    for exc_class in CLIENT_ERRORS:
        app.add_exception_handler(exc_class, client_error)
    for exc_class in EMPTY:
        app.add_exception_handler(exc_class, empty_tile)
    app.add_exception_handler(RemoteAssetUnavailable, remote_unavailable)
    for exc_class in SERVER_ERRORS:
        app.add_exception_handler(exc_class, server_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
