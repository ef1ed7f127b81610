"""Administration of organisations, keys and policies; every change is written to the audit log.

Used by the `csdr-admin` command line and by the catalog's admin endpoints, so both behave alike.
Keys are also delegated: an organisation's administrator (scope `org-admin`) issues and revokes
its own organisation's keys of the scopes it may grant (`grantable`), never another's.
"""

from datetime import UTC, date, datetime, time
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from csdr_access.keys import digest, new_key
from csdr_access.policies import Policy
from csdr_access.principals import Principal

ORG_KINDS = ("main", "partner", "agency")
ORG_ADMIN = "org-admin"
SCOPES = ("read", "ingest", "admin", "mirror", ORG_ADMIN)
# What an organisation's administrator may grant its own organisation's keys: `ingest` writes
# the node's catalogue, `mirror` reads without quota, `admin` is the node's: node administrators'.
ORG_GRANTABLE = ("read", ORG_ADMIN)


class AdminError(Exception):
    """An administrative request that cannot be carried out; the message says why."""


class NotPermitted(AdminError):
    """The caller's key does not allow this change (HTTP 403); the message says what is missing."""


class KeyNotFound(AdminError):
    """No active key with that prefix that the caller may see (HTTP 404)."""


class OrgNotFound(AdminError):
    """No organisation of that name (HTTP 404)."""


class OrgExists(AdminError):
    """An organisation of that name is registered already (HTTP 409)."""


def audit(conn: psycopg.Connection, actor: str, action: str, detail: dict[str, Any]) -> None:
    """Record who did what (never a key, only its prefix)."""
    conn.execute(
        "INSERT INTO csdr.audit_log (actor, action, detail) VALUES (%s, %s, %s)",
        (actor, action, Jsonb(detail)),
    )


def _org_id(conn: psycopg.Connection, name: str) -> int:
    row = conn.execute("SELECT id FROM csdr.organisations WHERE name = %s", (name,)).fetchone()
    if row is None:
        raise OrgNotFound(f"no organisation named {name!r} (see `csdr-admin org list`)")
    return int(row[0])


def add_org(conn: psycopg.Connection, name: str, country: str, kind: str, actor: str) -> None:
    """Register an organisation (country as ISO 3166 alpha-2)."""
    if kind not in ORG_KINDS:
        raise AdminError(f"kind must be one of {', '.join(ORG_KINDS)}, not {kind!r}")
    if not (len(country) == 2 and country.isascii() and country.isalpha()):
        raise AdminError(f"country must be a two-letter ISO 3166 code, not {country!r}")
    with conn.transaction():
        try:
            conn.execute(
                "INSERT INTO csdr.organisations (name, country, kind) VALUES (%s, %s, %s)",
                (name, country.upper(), kind),
            )
        except psycopg.errors.UniqueViolation as exc:
            raise OrgExists(f"an organisation named {name!r} exists already") from exc
        audit(conn, actor, "org.add", {"name": name, "country": country.upper(), "kind": kind})


def list_orgs(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every organisation, with whether its orders wait for an administrator (`approval`:
    manual) or are accepted at once (auto; csdr_access.quotas.set_approval)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT o.name, o.country, o.kind, o.created_at,"
            " CASE WHEN m.org_id IS NULL THEN 'auto' ELSE 'manual' END AS approval"
            " FROM csdr.organisations o LEFT JOIN csdr.manual_approval m ON m.org_id = o.id"
            " ORDER BY o.name"
        ).fetchall()


def get_org(conn: psycopg.Connection, name: str) -> dict[str, Any]:
    """One organisation: name, country, kind, registration time."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT name, country, kind, created_at FROM csdr.organisations WHERE name = %s",
            (name,),
        ).fetchone()
    if row is None:
        raise OrgNotFound(f"no organisation named {name!r} (see `csdr-admin org list`)")
    return row


def issue_key(
    conn: psycopg.Connection,
    org: str,
    scopes: list[str],
    actor: str,
    expires: date | None = None,
    label: str | None = None,
) -> tuple[str, str]:
    """Create a key for an organisation; return (key, prefix). The key is shown only now."""
    unknown = set(scopes) - set(SCOPES)
    if not scopes or unknown:
        raise AdminError(f"scopes must be among {', '.join(SCOPES)}; got {', '.join(scopes)}")
    expires_at = datetime.combine(expires, time.max, UTC) if expires else None
    if expires_at and expires_at <= datetime.now(UTC):
        raise AdminError(f"expiry {expires} is in the past")
    key, prefix = new_key()
    with conn.transaction():
        conn.execute(
            "INSERT INTO csdr.api_keys (prefix, digest, org_id, scopes, expires_at, label)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (prefix, digest(key), _org_id(conn, org), sorted(set(scopes)), expires_at, label),
        )
        audit(
            conn,
            actor,
            "key.issue",
            {
                "prefix": prefix,
                "org": org,
                "scopes": sorted(scopes),
                "expires": str(expires) if expires else None,
            },
        )
    return key, prefix


def revoke_key(conn: psycopg.Connection, prefix: str, actor: str) -> None:
    """Revoke a key by its prefix; it stops working within the services' cache time."""
    with conn.transaction():
        cur = conn.execute(
            "UPDATE csdr.api_keys SET revoked_at = now() WHERE prefix = %s AND revoked_at IS NULL",
            (prefix,),
        )
        if cur.rowcount == 0:
            raise AdminError(f"no active key with prefix {prefix!r} (see `csdr-admin key list`)")
        audit(conn, actor, "key.revoke", {"prefix": prefix})


def grantable(principal: Principal) -> tuple[str, ...]:
    """The scopes `principal` may put on keys it issues (none: it manages no keys)."""
    if principal.is_admin:
        return SCOPES
    return ORG_GRANTABLE if ORG_ADMIN in principal.scopes else ()


def issue_own_key(
    conn: psycopg.Connection,
    principal: Principal,
    scopes: list[str],
    actor: str,
    expires: date | None = None,
    label: str | None = None,
) -> tuple[str, str]:
    """Issue a key for the caller's own organisation, with scopes the caller may grant."""
    allowed = grantable(principal)
    if not allowed or principal.org is None:
        raise NotPermitted(f"the API key {principal.key_prefix} lacks the {ORG_ADMIN} scope")
    if beyond := sorted(set(scopes) - set(allowed)):
        raise NotPermitted(
            f"an organisation's administrator grants only {', '.join(allowed)}; "
            f"{', '.join(beyond)} is for node administrators"
        )
    return issue_key(conn, principal.org, scopes, actor, expires, label)


def revoke_own_key(conn: psycopg.Connection, principal: Principal, prefix: str, actor: str) -> None:
    """Revoke an active key of the caller's organisation (a node administrator: any key) whose
    scopes the caller may grant; another organisation's key is not found, as if absent."""
    allowed = grantable(principal)
    if not allowed:
        raise NotPermitted(f"the API key {principal.key_prefix} lacks the {ORG_ADMIN} scope")
    with conn.transaction():
        row = conn.execute(
            "SELECT org_id, scopes FROM csdr.api_keys"
            " WHERE prefix = %s AND revoked_at IS NULL FOR UPDATE",
            (prefix,),
        ).fetchone()
        if row is None or (not principal.is_admin and row[0] != principal.org_id):
            raise KeyNotFound(f"no active key with prefix {prefix!r} in your organisation")
        if beyond := sorted(set(row[1]) - set(allowed)):
            raise NotPermitted(
                f"the key {prefix} holds {', '.join(beyond)}: only a node administrator revokes it"
            )
        conn.execute("UPDATE csdr.api_keys SET revoked_at = now() WHERE prefix = %s", (prefix,))
        audit(conn, actor, "key.revoke", {"prefix": prefix})


def list_keys(conn: psycopg.Connection, org: str | None = None) -> list[dict[str, Any]]:
    """Keys (prefixes only, never the secret), optionally of one organisation."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT k.prefix, o.name AS org, k.scopes, k.label, k.created_at, k.expires_at,"
            " k.revoked_at, k.last_used_at FROM csdr.api_keys k"
            " JOIN csdr.organisations o ON o.id = k.org_id"
            " WHERE %(org)s::text IS NULL OR o.name = %(org)s ORDER BY o.name, k.created_at",
            {"org": org},
        ).fetchall()


def set_policy(
    conn: psycopg.Connection, collection: str, policy: str, orgs: list[str], actor: str
) -> None:
    """Set who may see a collection; `partners` needs the organisations, others take none."""
    try:
        policy = Policy(policy)
    except ValueError as exc:
        raise AdminError(f"policy must be one of {', '.join(Policy)}, not {policy!r}") from exc
    if policy is Policy.PARTNERS and not orgs:
        raise AdminError("the partners policy needs at least one --org")
    if policy is not Policy.PARTNERS and orgs:
        raise AdminError(f"--org applies only to the partners policy, not {policy}")
    exists = conn.execute("SELECT 1 FROM pgstac.collections WHERE id = %s", (collection,))
    if exists.fetchone() is None:
        raise AdminError(f"no collection {collection!r} in this node's catalog")
    with conn.transaction():
        org_ids = [_org_id(conn, o) for o in orgs]
        conn.execute(
            "INSERT INTO csdr.collection_policies (collection, policy) VALUES (%s, %s)"
            " ON CONFLICT (collection) DO UPDATE SET policy = excluded.policy, updated_at = now()",
            (collection, str(policy)),
        )
        conn.execute("DELETE FROM csdr.collection_partners WHERE collection = %s", (collection,))
        for org_id in org_ids:
            conn.execute(
                "INSERT INTO csdr.collection_partners (collection, org_id) VALUES (%s, %s)",
                (collection, org_id),
            )
        audit(
            conn,
            actor,
            "policy.set",
            {"collection": collection, "policy": str(policy), "orgs": sorted(orgs)},
        )


def list_policies(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every collection with its policy (public when none was set) and partner organisations."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT c.id AS collection, coalesce(p.policy, 'public') AS policy,"
            " coalesce(array_agg(o.name ORDER BY o.name) FILTER (WHERE o.name IS NOT NULL),"
            " '{}') AS orgs FROM pgstac.collections c"
            " LEFT JOIN csdr.collection_policies p ON p.collection = c.id"
            " LEFT JOIN csdr.collection_partners cp ON cp.collection = c.id"
            " LEFT JOIN csdr.organisations o ON o.id = cp.org_id"
            " GROUP BY c.id, p.policy ORDER BY c.id"
        ).fetchall()
