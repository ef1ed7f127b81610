"""Who calls the push API: an API key (Bearer, X-API-Key or `?api_key=` for feed readers such as
QGIS) with the `read` scope, acting for its organisation. An organisation sees and changes only its
own subscriptions (another's answers 404, as if it did not exist); administrators see all.

Deliveries are judged by the database, not here: csdr.owner_may_see() (migration 0009) applies
csdr_access's rule to the owning organisation at fan-out and again when each delivery is sent.
"""

from typing import Annotated

from fastapi import Depends, Request

from csdr_access import AccessControl, Principal
from csdr_access.dependencies import key_required
from csdr_push.errors import InvalidSubscription
from csdr_service.pools import PoolDep


def get_access(request: Request) -> AccessControl:
    """The service's key checker (its cache lives for `access_ttl_s`)."""
    return request.app.state.access


get_principal = key_required("push", "read")

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
