"""Who is calling: an API key becomes a Principal (an organisation and its scopes), or a 401."""

import hmac
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg

from csdr_access.keys import digest, prefix_of

_DUMMY_DIGEST = digest("csdr_00000000_" + "x" * 43)


class InvalidKey(Exception):
    """The key is malformed, unknown, revoked or expired (HTTP 401); the message says which."""


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


def authenticate(conn: psycopg.Connection, key: str) -> Principal:
    """Check a key against the database; raise InvalidKey saying what is wrong with it."""
    prefix = prefix_of(key)
    row = None
    if prefix:
        row = conn.execute(
            "SELECT k.digest, k.scopes, k.revoked_at, k.expires_at, o.id, o.name"
            " FROM csdr.api_keys k JOIN csdr.organisations o ON o.id = k.org_id"
            " WHERE k.prefix = %s",
            (prefix,),
        ).fetchone()
    stored = bytes(row[0]) if row else _DUMMY_DIGEST
    # Compare even when there is no row, so timing does not tell whether a prefix exists.
    if not hmac.compare_digest(stored, digest(key)) or row is None:
        raise InvalidKey("the API key is not valid for this node")
    _, scopes, revoked_at, expires_at, org_id, org = row
    if revoked_at is not None:
        raise InvalidKey(f"the API key {prefix} was revoked")
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise InvalidKey(f"the API key {prefix} expired on {expires_at:%Y-%m-%d}")
    conn.execute(  # at most one write a minute per key
        "UPDATE csdr.api_keys SET last_used_at = now() WHERE prefix = %s"
        " AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
        (prefix,),
    )
    return Principal(org_id=org_id, org=org, scopes=frozenset(scopes), key_prefix=prefix)


class Authenticator:
    """authenticate() behind a short-lived cache: a revoked key stops working within `ttl_s`."""

    def __init__(self, ttl_s: float = 2.0, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._cache: dict[bytes, tuple[float, Principal | InvalidKey]] = {}
        self._lock = threading.Lock()

    def __call__(self, conn: psycopg.Connection, key: str | None) -> Principal:
        """The principal for `key` (anonymous when None); raises InvalidKey."""
        if key is None:
            return ANONYMOUS
        cache_key = digest(key)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(cache_key)
        if hit is None or hit[0] < now:
            try:
                result: Principal | InvalidKey = authenticate(conn, key)
            except InvalidKey as exc:
                result = exc
            with self._lock:
                if len(self._cache) >= self.max_entries:
                    self._cache.clear()
                self._cache[cache_key] = (now + self.ttl_s, result)
        else:
            result = hit[1]
        if isinstance(result, InvalidKey):
            raise result
        return result
