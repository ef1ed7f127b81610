"""Who may queue ingest jobs: an API key (Bearer, X-API-Key or `?api_key=`) with the `ingest` scope
(admin keys have every scope). 401 with the reason for a missing, malformed, unknown, revoked or
expired key; 403 for a valid key without the scope. The inbox watcher runs inside this service and
queues its jobs directly, without a key."""

import math
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from csdr_access import AccessControl, InvalidKey, Principal, api_key_from
from csdr_access.principals import TooManyKeyFailures

BEARER = {"WWW-Authenticate": "Bearer"}


def get_principal(request: Request) -> Principal:
    """The caller, if its key may ingest; else 401 or 403."""
    key = api_key_from(request.headers, request.query_params)
    if key is None:
        raise HTTPException(
            401,
            "ingest needs an API key with the ingest scope"
            " (Authorization: Bearer, X-API-Key or ?api_key=)",
            headers=BEARER,
        )
    access: AccessControl = request.app.state.access
    client = request.client.host if request.client else None
    try:
        with request.app.state.pool.connection() as conn:
            principal = access.principal(conn, key, client)
    except TooManyKeyFailures as exc:
        retry = {"Retry-After": str(math.ceil(exc.retry_after_s))}
        raise HTTPException(429, str(exc), headers=retry) from None
    except InvalidKey as exc:
        raise HTTPException(401, str(exc), headers=BEARER) from None
    if not principal.can("ingest"):
        raise HTTPException(403, f"the API key {principal.key_prefix} lacks the ingest scope")
    return principal


IngestPrincipal = Annotated[Principal, Depends(get_principal)]
