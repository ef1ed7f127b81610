"""Keys this node's peers issued it (csdr.federation_peers), given to GDAL for reads under each
peer's STAC API only: a mirrored scene kept at its origin (`--assets proxy`) is read through the
origin's download route with that key, and the key goes to no other server.

GDAL binds an option to a path prefix with VSISetPathSpecificOption (GDAL >= 3.6; /vsicurl/ reads
GDAL_HTTP_HEADERS that way). rasterio does not wrap the call, and its `Env` options are
process-wide, not per URL: the call goes through ctypes (csdr_tiler.libgdal).
"""

from __future__ import annotations

import logging
from typing import Any

from csdr_tiler.libgdal import libgdal

logger = logging.getLogger(__name__)

PEERS_SQL = (
    "SELECT catalog_url, api_key FROM csdr.federation_peers"
    " WHERE catalog_url IS NOT NULL AND status = 'active'"
)


def prefix_of(catalog_url: str) -> str:
    """The GDAL path prefix of everything under a STAC API (its trailing slash keeps
    `http://host:8081` from matching `http://host:80810`)."""
    return f"/vsicurl/{catalog_url.rstrip('/')}/"


class PeerKeys:
    """The peers' keys as GDAL path-specific headers, kept in step with the database."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self._lib = libgdal()
        self._headers: dict[str, str] = {}  # path prefix -> header line

    def refresh(self) -> int:
        """Read the peers again; set, change or clear their headers; return how many changed."""
        with self.pool.connection() as conn:
            rows = conn.execute(PEERS_SQL).fetchall()
        wanted = {prefix_of(url): f"X-API-Key: {key}" for url, key in rows}
        changed = 0
        for prefix in set(self._headers) - set(wanted):
            self._lib.VSIClearPathSpecificOptions(prefix.encode())
            changed += 1
        for prefix, header in wanted.items():
            if self._headers.get(prefix) != header:
                self._lib.VSIClearPathSpecificOptions(prefix.encode())
                self._lib.VSISetPathSpecificOption(
                    prefix.encode(), b"GDAL_HTTP_HEADERS", header.encode()
                )
                changed += 1
        self._headers = wanted
        return changed

    def clear(self) -> None:
        """Forget every peer's header (the app stops)."""
        for prefix in self._headers:
            self._lib.VSIClearPathSpecificOptions(prefix.encode())
        self._headers = {}
