"""Administration over HTTP, for node administrators' keys: the same operations as `csdr-admin`
(csdr_access.admin; an organisation's approval mode: csdr_access.quotas), audited under the
key's prefix."""

from collections.abc import Iterator
from datetime import date
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from csdr_access import Principal, admin, quotas
from csdr_catalog.access import principal_of


def require_admin(request: Request) -> Principal:
    """The caller, when it holds an admin key; else 401 (no key) or 403."""
    principal = principal_of(request)
    if not principal.authenticated:
        raise HTTPException(
            401,
            "administration needs an API key with the admin scope",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not principal.is_admin:
        raise HTTPException(403, "this API key lacks the admin scope")
    return principal


def connection() -> Iterator[psycopg.Connection]:
    """A short-lived connection (the PG* variables) for one administrative request."""
    with psycopg.connect(autocommit=True) as conn:
        yield conn


Admin = Annotated[Principal, Depends(require_admin)]
Conn = Annotated[psycopg.Connection, Depends(connection)]
ADMIN_ONLY: dict[int | str, dict[str, Any]] = {
    401: {"description": "No valid API key"},
    403: {"description": "The key lacks the admin scope"},
}
router = APIRouter(prefix="/admin", tags=["Administration"], responses=ADMIN_ONLY)


def actor(principal: Principal) -> str:
    """Who the audit log names: the key's prefix, never the key."""
    return f"key:{principal.key_prefix}"


def refused(exc: admin.AdminError) -> HTTPException:
    """A refused request as a 400 naming the reason."""
    return HTTPException(400, str(exc))


class NewOrganisation(BaseModel):
    """An organisation to register."""

    name: str = Field(min_length=1)
    country: str = Field(description="ISO 3166 alpha-2 code", min_length=2, max_length=2)
    kind: Literal["main", "partner", "agency"]


class ApprovalChange(BaseModel):
    """Whether an organisation's orders wait for an administrator."""

    model_config = ConfigDict(extra="forbid")

    approval: Literal["auto", "manual"] = Field(
        description="`manual`: every order waits for an administrator; `auto`: accepted at once"
    )


class NewKey(BaseModel):
    """A key to issue."""

    org: str
    scopes: list[Literal["read", "ingest", "admin", "mirror", "org-admin"]] = Field(min_length=1)
    expires: date | None = Field(None, description="Last valid day")
    label: str | None = None


class PolicyChange(BaseModel):
    """Who may see a collection."""

    policy: Literal["public", "registered", "partners", "private"]
    orgs: list[str] = Field(default_factory=list, description="Partners, for `partners` only")


@router.get("/organisations", summary="Organisations")
def list_organisations(_: Admin, conn: Conn) -> list[dict[str, Any]]:
    """Every organisation: name, country, kind, registration time and approval mode."""
    return admin.list_orgs(conn)


@router.post(
    "/organisations",
    status_code=201,
    summary="Register an organisation",
    responses={
        400: {"description": "A country or kind that cannot be"},
        409: {"description": "An organisation of that name exists"},
    },
)
def add_organisation(body: NewOrganisation, who: Admin, conn: Conn) -> dict[str, str]:
    """Register an organisation (country: ISO 3166 alpha-2); its orders are accepted at once
    until its approval is set to manual."""
    try:
        admin.add_org(conn, body.name, body.country, body.kind, actor(who))
    except admin.OrgExists as exc:
        raise HTTPException(409, str(exc)) from exc
    except admin.AdminError as exc:
        raise refused(exc) from exc
    return {"name": body.name}


@router.put(
    "/organisations/{name}/approval",
    summary="Whether an organisation's orders wait for an administrator",
    responses={404: {"description": "No organisation of that name"}},
)
def set_approval(
    name: Annotated[str, Path(max_length=200)], body: ApprovalChange, who: Admin, conn: Conn
) -> dict[str, str]:
    """`manual`: the organisation's new orders wait for an administrator's approval (POST
    /orders/{id}/approve of the orders service); `auto`: they are accepted at once. Orders
    already held stay held until decided."""
    try:
        quotas.set_approval(conn, name, body.approval, actor(who))
    except admin.OrgNotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except admin.AdminError as exc:
        raise refused(exc) from exc
    return {"name": name, "approval": body.approval}


@router.get("/keys", summary="API keys (prefixes only)")
def list_keys(_: Admin, conn: Conn, org: str | None = None) -> list[dict[str, Any]]:
    """Keys, optionally of one organisation; never their secrets."""
    return admin.list_keys(conn, org)


@router.post("/keys", status_code=201, summary="Issue an API key (shown once)")
def issue_key(body: NewKey, who: Admin, conn: Conn) -> dict[str, str]:
    """Issue a key; the answer is the only time it is shown."""
    try:
        key, prefix = admin.issue_key(
            conn, body.org, list(body.scopes), actor(who), body.expires, body.label
        )
    except admin.AdminError as exc:
        raise refused(exc) from exc
    return {"prefix": prefix, "key": key}


@router.delete("/keys/{prefix}", status_code=204, summary="Revoke an API key")
def revoke_key(prefix: str, who: Admin, conn: Conn) -> Response:
    """Revoke a key by its prefix."""
    try:
        admin.revoke_key(conn, prefix, actor(who))
    except admin.AdminError as exc:
        raise HTTPException(404, str(exc)) from exc
    return Response(status_code=204)


@router.get("/policies", summary="Collection policies")
def list_policies(_: Admin, conn: Conn) -> list[dict[str, Any]]:
    """Every collection with its policy and partner organisations."""
    return admin.list_policies(conn)


@router.put("/policies/{collection_id}", summary="Set who may see a collection")
def set_policy(collection_id: str, body: PolicyChange, who: Admin, conn: Conn) -> dict[str, Any]:
    """Set a collection's policy."""
    try:
        admin.set_policy(conn, collection_id, body.policy, body.orgs, actor(who))
    except admin.AdminError as exc:
        raise refused(exc) from exc
    return {"collection": collection_id, "policy": body.policy, "orgs": sorted(body.orgs)}
