"""API keys: how they look, how they are stored, where a request carries them.

A key is `csdr_<prefix>_<secret>`: the 8-hex prefix is shown in listings and finds the row; the
whole key is stored only as its SHA-256 digest (the secret has 256 bits of entropy, so a slow KDF
adds nothing) and compared in constant time.
"""

import hashlib
import re
import secrets
from collections.abc import Mapping

KEY_PATTERN = re.compile(r"^csdr_([0-9a-f]{8})_[A-Za-z0-9_-]{43}$")


def new_key() -> tuple[str, str]:
    """A fresh key and its prefix."""
    prefix = secrets.token_hex(4)
    return f"csdr_{prefix}_{secrets.token_urlsafe(32)}", prefix


def digest(key: str) -> bytes:
    """What is stored for a key."""
    return hashlib.sha256(key.encode()).digest()


def prefix_of(key: str) -> str | None:
    """The prefix of a well-formed key, else None."""
    match = KEY_PATTERN.match(key)
    return match.group(1) if match else None


def api_key_from(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The key a request carries: `Authorization: Bearer`, `X-API-Key`, or `?api_key=` (QGIS)."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return headers.get("x-api-key") or query.get("api_key") or None
