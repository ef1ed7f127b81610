"""Who calls the push API: an API key (Bearer, X-API-Key or `?api_key=` for feed readers such as
QGIS) with the `read` scope, acting for its organisation. An organisation sees and changes only its
own subscriptions (another's answers 404, as if it did not exist); administrators see all.

Deliveries are judged by the database, not here: csdr.owner_may_see() (migration 0009) applies
csdr_access's rule to the owning organisation at fan-out and again when each delivery is sent.
"""

from typing import Annotated

from fastapi import Depends, Request

from csdr_access import AccessControl, InvalidKey, Principal, api_key_from
from csdr_access.principals import TooManyKeyFailures
from csdr_push.db import PoolDep
from csdr_push.errors import Forbidden, InvalidSubscription, TooManyFailedKeys, Unauthorized


def get_access(request: Request) -> AccessControl:
    """The service's key checker (its cache lives for `access_ttl_s`)."""
    return request.app.state.access


async def get_principal(request: Request, pool: PoolDep) -> Principal:
    """The caller; 401 without a valid key, 403 without the read scope."""
    key = api_key_from(request.headers, request.query_params)
    if key is None:
        raise Unauthorized(
            "the push API needs an API key (Authorization: Bearer, X-API-Key or ?api_key=)"
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


def owner_scope(principal: Principal) -> int | None:
    """The organisation whose subscriptions the caller may touch; None: every one (an admin)."""
    return None if principal.is_admin else principal.org_id


async def check_collections(
    request: Request, pool: PoolDep, principal: Principal, collections: list[str] | None
) -> None:
    """A subscription may name only collections its owner may see (uncached: one just made
    counts). The answer for an invisible collection is the one for a missing collection, so a
    400 never tells whether a restricted collection exists. Administrators may also name
    collections that do not exist yet (the first ingest creates them)."""
    if not collections or principal.is_admin:
        return
    visible = await get_access(request).visible_async(pool, principal, fresh=True)
    for collection in collections:
        if collection not in visible:
            raise InvalidSubscription(f"collections: no collection {collection!r} on this node")
