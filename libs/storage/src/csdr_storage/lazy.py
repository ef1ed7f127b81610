"""Lazily mirrored assets (peers registered with `--assets lazy`): which use of an asset on this
node counts as its first use, and how the database hears of it. A mirrored asset of such a peer
reads its origin (`{peer's STAC API}/collections/.../assets/<key>`) and waits as `wanted`;
`csdr.use_federation_asset` (migration 0034) queues its copy (csdr_federation.assets), which then
replaces the href as a `copy` peer's does.

The rule, here only:
- a use is a read of the asset's bytes for a request: in the tiler, a tile, crop, preview, point
  or statistics of an item, or of a scene in a mosaic a request draws (csdr_tiler.datasets);
  in the catalog, a GET of the asset's download route (csdr_catalog.downloads);
- not a use: an item's `/info` (its headers only), the tiler's background renders of low-zoom
  pyramids (a pyramid touches every scene of a collection), a HEAD of the download route;
- an href is a candidate only under a lazy peer's STAC API (`LAZY_PEERS_SQL`), or a copy's own
  path under its mirrors folder (`LAZY_COPIES_SQL`: a use of a copy makes it recently used, for
  the disk budget of lazy copies, migration 0038): any other costs nothing. A process tells
  the database of a candidate once per `remember_s`, however many tiles read it meanwhile; the
  database keeps one copy per asset, however many processes tell it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from cachetools import TTLCache

LAZY_PEERS_SQL = (
    "SELECT catalog_url FROM csdr.federation_peers"
    " WHERE assets = 'lazy' AND catalog_url IS NOT NULL ORDER BY catalog_url"
)
# Where each lazy peer's copies live (csdr_federation.assets.copy_path: `<root>/mirrors/<peer>/`;
# peer names need no quoting), read off one of its copies.
LAZY_COPIES_SQL = """
SELECT left(a.path, strpos(a.path, '/mirrors/' || p.name || '/') + length(p.name) + 9)
FROM csdr.federation_peers p
CROSS JOIN LATERAL (
    SELECT path FROM csdr.federation_assets
    WHERE peer = p.name AND status = 'copied' AND strpos(path, '/mirrors/' || p.name || '/') > 0
    LIMIT 1
) a
WHERE p.assets = 'lazy'
ORDER BY 1
"""
# The key the asset's peer issued to this node while its copy is not done, else NULL.
USE_SQL = "SELECT csdr.use_federation_asset(%s)"  # psycopg
USE_SQL_ASYNCPG = "SELECT csdr.use_federation_asset($1)"
KEY_SQL_ASYNCPG = "SELECT csdr.federation_asset_key($1)"


def lazy_prefix(catalog_url: str) -> str:
    """What every asset href of a peer's STAC API starts with (its download route)."""
    return f"{catalog_url.rstrip('/')}/collections/"


class FirstUses:
    """The hrefs under lazy peers' STAC APIs, and those this process told the database of
    recently. Thread-safe: the tiler reads in many threads."""

    def __init__(self, remember_s: float = 600.0, max_hrefs: int = 100_000) -> None:
        """Remember a told href `remember_s` (a re-mirrored asset is wanted again after it)."""
        self.prefixes: tuple[str, ...] = ()
        self.copies: tuple[str, ...] = ()
        self._told: TTLCache[str, bool] = TTLCache(maxsize=max_hrefs, ttl=remember_s)
        self._lock = threading.Lock()

    def set_peers(self, catalog_urls: Iterable[str]) -> bool:
        """Take the lazy peers' STAC APIs (LAZY_PEERS_SQL); True when they changed."""
        prefixes = tuple(sorted(lazy_prefix(url) for url in catalog_urls))
        changed = prefixes != self.prefixes
        self.prefixes = prefixes
        return changed

    def set_copies(self, folders: Iterable[str]) -> bool:
        """Take the lazy peers' mirrors folders (LAZY_COPIES_SQL); True when they changed."""
        copies = tuple(sorted(folders))
        changed = copies != self.copies
        self.copies = copies
        return changed

    def candidate(self, href: str) -> bool:
        """Whether `href` is read at a lazy peer's STAC API."""
        return bool(self.prefixes) and href.startswith(self.prefixes)

    def first(self, href: str) -> bool:
        """Whether a use of `href` (at a lazy peer's STAC API, or a lazy copy's path) is to be
        told to the database now (and remember it is)."""
        copy = bool(self.copies) and href.startswith(self.copies) and "/../" not in href
        if not (copy or self.candidate(href)):
            return False
        with self._lock:
            if href in self._told:
                return False
            self._told[href] = True
            return True

    def forget(self, href: str) -> None:
        """Tell the database again at the next use (telling it failed)."""
        with self._lock:
            self._told.pop(href, None)
