"""Who reads the feed or the peers' status: an API key (Bearer, X-API-Key or `?api_key=`).

The feed serves a key only what csdr_access's rule lets its organisation see; the peers' status
needs the admin scope.
"""

from typing import Annotated

from fastapi import Depends, Request

from csdr_access import AccessControl, InvalidKey, Principal, api_key_from
from csdr_access.principals import TooManyKeyFailures
from csdr_federation.db import PoolDep
from csdr_federation.errors import Forbidden, TooManyFailedKeys, Unauthorized


def get_access(request: Request) -> AccessControl:
    """The service's key checker (its cache lives for `access_ttl_s`)."""
    return request.app.state.access


async def get_principal(request: Request, pool: PoolDep) -> Principal:
    """The caller; 401 without a valid key, 403 without the read scope."""
    key = api_key_from(request.headers, request.query_params)
    if key is None:
        raise Unauthorized(
            "the federation API needs an API key (Authorization: Bearer, X-API-Key or ?api_key=)"
        )
    client = request.client.host if request.client else None
    try:
        principal = await get_access(request).principal_async(pool, key, client)
    except TooManyKeyFailures as exc:
        raise TooManyFailedKeys(str(exc), exc.retry_after_s) from None
    except InvalidKey as exc:
        raise Unauthorized(str(exc)) from None
    if not principal.can("read"):
        raise Forbidden(f"the API key {principal.key_prefix} lacks the read scope")
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_admin(principal: PrincipalDep) -> Principal:
    """The caller, who must hold the admin scope (403 otherwise)."""
    if not principal.is_admin:
        raise Forbidden(f"the API key {principal.key_prefix} lacks the admin scope")
    return principal


AdminDep = Annotated[Principal, Depends(get_admin)]
