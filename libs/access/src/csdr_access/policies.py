"""Collection policies and the one rule that answers "which collections may this principal see"."""

from enum import StrEnum

import psycopg

from csdr_access.principals import Principal


class Policy(StrEnum):
    """Who may see a collection (a collection with no policy is public)."""

    PUBLIC = "public"  # everyone, with or without a key
    REGISTERED = "registered"  # any valid key
    PARTNERS = "partners"  # keys of the listed organisations
    PRIVATE = "private"  # node administrators only


# Administrators see every collection; everyone else what the policies grant them.
VISIBLE_SQL = """
SELECT c.id FROM pgstac.collections c
LEFT JOIN csdr.collection_policies p ON p.collection = c.id
WHERE %(admin)s
   OR p.policy IS NULL OR p.policy = 'public'
   OR (p.policy = 'registered' AND %(authenticated)s)
   OR (p.policy = 'partners' AND EXISTS (
        SELECT 1 FROM csdr.collection_partners cp
        WHERE cp.collection = c.id AND cp.org_id = %(org_id)s))
"""


def visible_collections(conn: psycopg.Connection, principal: Principal) -> frozenset[str]:
    """The ids of the collections `principal` may see: the rule every read path applies."""
    rows = conn.execute(
        VISIBLE_SQL,
        {
            "admin": principal.is_admin,
            "authenticated": principal.authenticated,
            "org_id": principal.org_id,
        },
    ).fetchall()
    return frozenset(r[0] for r in rows)
