"""Collection policies and the one rule that answers "which collections may this principal see"."""

from enum import StrEnum


class Policy(StrEnum):
    """Who may see a collection (a collection with no policy is public)."""

    PUBLIC = "public"  # everyone, with or without a key
    REGISTERED = "registered"  # any valid key
    PARTNERS = "partners"  # keys of the listed organisations
    PRIVATE = "private"  # node administrators only


# The rule. $1: administrator, $2: any valid key, $3: the key's organisation.
VISIBLE_SQL = """
SELECT c.id FROM pgstac.collections c
LEFT JOIN csdr.collection_policies p ON p.collection = c.id
WHERE $1::boolean
   OR p.policy IS NULL OR p.policy = 'public'
   OR (p.policy = 'registered' AND $2::boolean)
   OR (p.policy = 'partners' AND EXISTS (
        SELECT 1 FROM csdr.collection_partners cp
        WHERE cp.collection = c.id AND cp.org_id = $3::bigint))
"""
