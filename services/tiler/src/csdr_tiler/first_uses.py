"""The tiler's side of lazily mirrored assets (csdr_storage.lazy has the rule): the readers of
csdr_tiler.datasets call `USES.note(href)` for every asset whose pixels a request reads; a first
use of a candidate href is told to the database on a thread of its own, so a tile never waits on
it, and no other read writes anything.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from csdr_storage.lazy import LAZY_COPIES_SQL, LAZY_PEERS_SQL, USE_SQL, FirstUses

logger = logging.getLogger(__name__)


class Uses:
    """First uses of lazily mirrored assets, told to the primary database."""

    def __init__(self) -> None:
        self.hrefs = FirstUses()
        self._pool: Any = None
        self._teller: ThreadPoolExecutor | None = None

    def open(self, pool: Any) -> None:
        """Tell the database at `pool` (the primary's) from now on."""
        self._pool = pool
        self._teller = ThreadPoolExecutor(max_workers=1, thread_name_prefix="csdr-first-uses")

    def close(self) -> None:
        """Stop telling (uses not told yet are told before this returns)."""
        if self._teller is not None:
            self._teller.shutdown(wait=True)
        self._teller, self._pool = None, None

    def refresh(self) -> int:
        """Read the lazy peers' STAC APIs again; 1 when they changed, else 0."""
        if self._pool is None:
            return 0
        with self._pool.connection() as conn:
            urls = [row[0] for row in conn.execute(LAZY_PEERS_SQL)]
            folders = [row[0] for row in conn.execute(LAZY_COPIES_SQL)]
        return int(self.hrefs.set_peers(urls) | self.hrefs.set_copies(folders))

    def note(self, href: str) -> None:
        """A request reads the pixels of the asset at `href` (cheap unless it is a first use)."""
        teller = self._teller
        if teller is not None and self.hrefs.first(href):
            teller.submit(self._tell, href)

    def _tell(self, href: str) -> None:
        try:
            with self._pool.connection() as conn:
                conn.execute(USE_SQL, (href,))
        except Exception as exc:  # the read goes on through the origin; the next use tells again
            self.hrefs.forget(href)
            logger.warning("tiler: cannot record the use of %s: %r", href, exc)


USES = Uses()
