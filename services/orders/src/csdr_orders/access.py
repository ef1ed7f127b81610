"""Who calls the orders API: an API key (Bearer, X-API-Key or `?api_key=`) with the `read` scope,
acting for its organisation, within the key's rate limit. An organisation sees and changes only
its own orders (another's answers 404, as if it did not exist); administrators see all. Past the
rate limit the answer is 429 with Retry-After; the quota's refusal is a 403: never mixed."""

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from csdr_access import AccessControl, Principal
from csdr_access.dependencies import key_required
from csdr_access.ratelimit import RateLimiter

_key_holder = key_required("orders", "read")


def get_access(request: Request) -> AccessControl:
    """The service's key checker (its cache lives for `access_ttl_s`)."""
    return request.app.state.access


async def get_principal(
    request: Request, principal: Annotated[Principal, Depends(_key_holder)]
) -> Principal:
    """The caller, counted against its key's rate limit."""
    limiter: RateLimiter = request.app.state.limiter
    assert principal.key_prefix is not None
    wait_s = await limiter.acquire_async(request.app.state.pool, principal.key_prefix)
    if wait_s:
        raise HTTPException(
            429,
            "rate limit reached; retry later",
            headers={"Retry-After": RateLimiter.retry_after(wait_s)},
        )
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def org_scope(principal: Principal) -> int | None:
    """The organisation whose orders the caller may see; None: every one (an administrator)."""
    return None if principal.is_admin else principal.org_id


def org_of(principal: Principal) -> int:
    """The organisation an order is placed for."""
    if principal.org_id is None:
        raise HTTPException(403, "orders are placed by an organisation's key")
    return principal.org_id
