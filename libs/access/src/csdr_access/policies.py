"""Collection policies and the one rule that answers "which collections may this principal see"."""

from enum import StrEnum


class Policy(StrEnum):
    """Who may see a collection (a collection with no policy is public)."""

    PUBLIC = "public"  # everyone, with or without a key
    REGISTERED = "registered"  # any valid key
    PARTNERS = "partners"  # keys of the listed organisations
    PRIVATE = "private"  # node administrators only


# The rule itself is the database function csdr.visible_collections(admin, authenticated, org id)
# (infra/db/migrations/0009_push_access.sql), so services and push's SQL fan-out share one text.
VISIBLE_SQL = "SELECT csdr.visible_collections($1::boolean, $2::boolean, $3::bigint)"
