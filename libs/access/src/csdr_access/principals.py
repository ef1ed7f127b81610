"""Who is calling: an API key becomes a Principal (an organisation and its scopes), or a 401."""

import hmac
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from csdr_access.keys import digest, prefix_of

_DUMMY_DIGEST = digest("csdr_00000000_" + "x" * 43)

# $n placeholders: asyncpg takes them as they are, psycopg through a RawCursor.
KEY_SQL = """
SELECT k.digest, k.scopes, k.revoked_at, k.expires_at, o.id, o.name
FROM csdr.api_keys k JOIN csdr.organisations o ON o.id = k.org_id
WHERE k.prefix = $1
"""
# At most one write a minute per key.
TOUCH_SQL = """
UPDATE csdr.api_keys SET last_used_at = now()
WHERE prefix = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
"""


# Failed key attempts of a client address (migration 0018): read before a key is checked,
# written after one fails.
KEY_FAILURES_SQL = "SELECT csdr.key_failures_of($1, $2)"
RECORD_KEY_FAILURE_SQL = "SELECT csdr.record_key_failure($1, $2)"


class InvalidKey(Exception):
    """The key is malformed, unknown, revoked or expired (HTTP 401); the message says which."""


class TooManyKeyFailures(InvalidKey):
    """The client address sent too many invalid keys lately (HTTP 429): its keys are not
    checked until `retry_after_s` has passed."""

    def __init__(self, failures: int, window_s: float) -> None:
        super().__init__(
            f"too many invalid API keys from this address ({failures} in the last "
            f"{window_s:g} s); retry later"
        )
        self.retry_after_s = window_s


@dataclass(frozen=True)
class Principal:
    """The caller: anonymous, or an organisation acting with a key's scopes."""

    org_id: int | None = None
    org: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    key_prefix: str | None = None

    @property
    def authenticated(self) -> bool:
        """True for any valid key."""
        return self.key_prefix is not None

    @property
    def is_admin(self) -> bool:
        """Node administrators see and may do everything."""
        return "admin" in self.scopes

    def can(self, scope: str) -> bool:
        """True when the key grants `scope` (admin grants all)."""
        return self.is_admin or scope in self.scopes


ANONYMOUS = Principal()


def principal_from(key: str, row: Any | None) -> Principal:
    """Judge a key against its database row (None when its prefix is unknown)."""
    stored = bytes(row[0]) if row is not None else _DUMMY_DIGEST
    # Compare even when there is no row, so timing does not tell whether a prefix exists.
    if not hmac.compare_digest(stored, digest(key)) or row is None:
        raise InvalidKey("the API key is not valid for this node")
    _, scopes, revoked_at, expires_at, org_id, org = row
    prefix = prefix_of(key)
    if revoked_at is not None:
        raise InvalidKey(f"the API key {prefix} was revoked")
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise InvalidKey(f"the API key {prefix} expired on {expires_at:%Y-%m-%d}")
    return Principal(org_id=org_id, org=org, scopes=frozenset(scopes), key_prefix=prefix)
