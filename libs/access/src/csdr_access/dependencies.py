"""The caller of an API that needs a key in every route (push, federation), as a FastAPI
dependency over the service's asyncpg pool (`app.state.pool`) and key checker
(`app.state.access`): 401 without a valid key, 429 for an address that sent too many invalid
ones, 403 without the scope; raised as HTTPException, answered in the service's error shape."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Request

from csdr_access.access import AccessControl
from csdr_access.keys import api_key_from
from csdr_access.principals import InvalidKey, Principal, TooManyKeyFailures

BEARER = {"WWW-Authenticate": "Bearer"}


def key_required(service: str, scope: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency giving the caller of `service`'s API, who must hold `scope`."""

    async def caller(request: Request) -> Principal:
        key = api_key_from(request.headers, request.query_params)
        if key is None:
            raise HTTPException(
                401,
                f"the {service} API needs an API key (Authorization: Bearer, X-API-Key or "
                "?api_key=)",
                headers=BEARER,
            )
        access: AccessControl = request.app.state.access
        client = request.client.host if request.client else None
        try:
            principal = await access.principal_async(request.app.state.pool, key, client)
        except TooManyKeyFailures as exc:
            retry = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
            raise HTTPException(429, str(exc), headers=retry) from None
        except InvalidKey as exc:
            raise HTTPException(401, str(exc), headers=BEARER) from None
        if not principal.can(scope):
            raise HTTPException(403, f"the API key {principal.key_prefix} lacks the {scope} scope")
        return principal

    return caller
