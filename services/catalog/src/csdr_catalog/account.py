"""`/account`: the caller as this node knows it (its organisation, the key's scopes, the scopes it
may grant) and the API keys of its own organisation (prefixes only), for any valid key; an
organisation's administrator (scope `org-admin`) also issues and revokes them, within
csdr_access.admin's rules. `/admin` (csdr_catalog.admin) stays the node administrators' view."""

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from csdr_access import Principal, admin
from csdr_catalog.access import principal_of
from csdr_catalog.admin import Conn, actor

router = APIRouter(prefix="/account", tags=["Account"])

KEYED: dict[int | str, dict[str, Any]] = {401: {"description": "No valid API key"}}
MANAGING: dict[int | str, dict[str, Any]] = {
    **KEYED,
    403: {"description": "The key may not manage keys, or not with these scopes"},
}


def require_key(request: Request) -> Principal:
    """The caller, when it sent a valid key (the access middleware judged it); else 401."""
    principal = principal_of(request)
    if not principal.authenticated or principal.org is None:
        raise HTTPException(
            401, "the account needs an API key", headers={"WWW-Authenticate": "Bearer"}
        )
    return principal


Keyed = Annotated[Principal, Depends(require_key)]


class OwnKey(BaseModel):
    """A key to issue for the caller's own organisation."""

    model_config = ConfigDict(extra="forbid")

    scopes: list[Literal["read", "ingest", "admin", "mirror", "org-admin"]] = Field(
        min_length=1, max_length=5
    )
    expires: date | None = Field(None, description="Last valid day")
    label: str | None = Field(None, max_length=200)


def refused(exc: admin.AdminError) -> HTTPException:
    """403 for a change the key does not allow, 404 for a key it cannot see, else 400."""
    if isinstance(exc, admin.NotPermitted):
        return HTTPException(403, str(exc))
    if isinstance(exc, admin.KeyNotFound):
        return HTTPException(404, str(exc))
    return HTTPException(400, str(exc))


@router.get("", summary="The caller: organisation and key", responses=KEYED)
def account(who: Keyed, conn: Conn) -> dict[str, Any]:
    """The key's organisation (name, country, kind), its prefix and scopes, and the scopes it
    may put on keys it issues (`grants`; empty: it manages no keys)."""
    assert who.org is not None
    org = admin.get_org(conn, who.org)
    return {
        "organisation": org["name"],
        "country": org["country"],
        "kind": org["kind"],
        "key": who.key_prefix,
        "scopes": sorted(who.scopes),
        "admin": who.is_admin,
        "grants": list(admin.grantable(who)),
    }


@router.get(
    "/keys", summary="The API keys of the caller's organisation (prefixes only)", responses=KEYED
)
def own_keys(who: Keyed, conn: Conn) -> list[dict[str, Any]]:
    """The organisation's keys, revoked and expired ones included; never their secrets."""
    return admin.list_keys(conn, who.org)


@router.post(
    "/keys",
    status_code=201,
    summary="Issue a key for the caller's organisation (shown once; scope org-admin)",
    responses={**MANAGING, 400: {"description": "A scope or expiry that cannot be"}},
)
def issue_own_key(body: OwnKey, who: Keyed, conn: Conn) -> dict[str, Any]:
    """Issue a key of the scopes the caller may grant (`grants` of GET /account); the answer is
    the only time the key is shown."""
    try:
        key, prefix = admin.issue_own_key(
            conn, who, list(body.scopes), actor(who), body.expires, body.label
        )
    except admin.AdminError as exc:
        raise refused(exc) from exc
    return {"prefix": prefix, "key": key, "org": who.org, "scopes": sorted(set(body.scopes))}


@router.delete(
    "/keys/{prefix}",
    status_code=204,
    summary="Revoke a key of the caller's organisation (scope org-admin)",
    responses={**MANAGING, 404: {"description": "No active key of that prefix here"}},
)
def revoke_own_key(prefix: Annotated[str, Path(max_length=64)], who: Keyed, conn: Conn) -> Response:
    """Revoke one of the organisation's keys holding only scopes the caller may grant; another
    organisation's key answers 404, as if it did not exist."""
    try:
        admin.revoke_own_key(conn, who, prefix, actor(who))
    except admin.AdminError as exc:
        raise refused(exc) from exc
    return Response(status_code=204)
