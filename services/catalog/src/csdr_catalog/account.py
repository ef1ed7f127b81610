"""`/account`: the caller as this node knows it (its organisation, the key's scopes) and the API
keys of its own organisation (prefixes only), for any valid key. A partner's pages need these
without the admin scope; `/admin` (csdr_catalog.admin) stays the administrators' view of all."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request

from csdr_access import Principal, admin
from csdr_catalog.access import principal_of
from csdr_catalog.admin import Conn

router = APIRouter(prefix="/account", tags=["Account"])


def require_key(request: Request) -> Principal:
    """The caller, when it sent a valid key (the access middleware judged it); else 401."""
    principal = principal_of(request)
    if not principal.authenticated or principal.org is None:
        raise HTTPException(
            401, "the account needs an API key", headers={"WWW-Authenticate": "Bearer"}
        )
    return principal


Keyed = Annotated[Principal, Depends(require_key)]


@router.get("", summary="The caller: organisation and key")
def account(who: Keyed, conn: Conn) -> dict[str, Any]:
    """The key's organisation (name, country, kind), its prefix and scopes."""
    assert who.org is not None
    org = admin.get_org(conn, who.org)
    return {
        "organisation": org["name"],
        "country": org["country"],
        "kind": org["kind"],
        "key": who.key_prefix,
        "scopes": sorted(who.scopes),
        "admin": who.is_admin,
    }


@router.get("/keys", summary="The API keys of the caller's organisation (prefixes only)")
def own_keys(who: Keyed, conn: Conn) -> list[dict[str, Any]]:
    """The organisation's keys, revoked and expired ones included; never their secrets."""
    return admin.list_keys(conn, who.org)
