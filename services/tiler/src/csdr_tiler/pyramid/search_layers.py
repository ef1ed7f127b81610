"""Which registered searches have a low-zoom pyramid, bounded in number.

A search layer costs database space (every tile from z0 to z8 under its scenes, per asset) and
the refresher's time (a full build over 2,000 scenes takes about a minute), so not every search
gets one; at most `max_layers`, node-wide:
- a search (registered, or a caller's narrowed copy) is adopted when a low-zoom tile of it is
  asked for (whatever the tile's parameters: those that need the scenes still read them); when
  all places are taken, it replaces the least recently used layer only if that one has not
  been used for `evict_after_s`, else it keeps being read from the scenes, as any mosaic deeper
  than the pyramid is;
- the refresher adopts the mosaics registered (or read from their scenes) since its last round
  that name collections, into free places only, and never asked for until someone asks: a new
  search takes such a place at once. Registering thousands of searches therefore costs at most
  `max_layers` builds and keeps no place from a search in use;
- layers unused for `idle_s` (or never asked for that long) are dropped by the refresher.
The rules run in the database (migration 0014), so all the node's tiler processes share them.
"""

import logging
from datetime import datetime

from psycopg_pool import ConnectionPool

from csdr_tiler.pyramid.layers import Layer

logger = logging.getLogger(__name__)

USE_SQL = "SELECT csdr.use_search_layer(%s, %s, %s, make_interval(secs => %s))"
KEPT_SQL = """
    SELECT search, collections FROM csdr.search_layers ORDER BY asked_at DESC NULLS LAST
"""
ADOPT_SQL = "SELECT csdr.adopt_registered_searches(%s, %s)"
NOW_SQL = "SELECT now()"
DROP_IDLE_SQL = """
    DELETE FROM csdr.search_layers
    WHERE coalesce(asked_at, created_at) < now() - make_interval(secs => %s)
    RETURNING search
"""


class SearchLayers:
    """The bounded set of search layers, kept in `csdr.search_layers`."""

    def __init__(
        self, pool: ConnectionPool, max_layers: int, evict_after_s: float, idle_s: float
    ) -> None:
        """Keep at most `max_layers`; replace one only after `evict_after_s` unused; drop those
        unused for `idle_s`."""
        self.pool = pool
        self.max_layers = max_layers
        self.evict_after_s = evict_after_s
        self.idle_s = idle_s
        with pool.connection() as conn:
            row = conn.execute(NOW_SQL).fetchone()
        assert row is not None
        self._registered_since: datetime = row[0]
        """Registered mosaics are adopted when registered (or read) after this time."""

    def use(self, layer: Layer) -> bool:
        """Note a request for one of the layer's tiles, adopting it if there is room; whether
        the layer is kept (False: read its scenes)."""
        collections = list(layer.collections) if layer.collections is not None else None
        with self.pool.connection() as conn:
            row = conn.execute(
                USE_SQL, (layer.name, collections, self.max_layers, self.evict_after_s)
            ).fetchone()
        return bool(row and row[0])

    def adopt_registered(self) -> list[str]:
        """Adopt the mosaics registered (or read) since the last call that name collections,
        into free places only (see the module docstring); the searches adopted."""
        with self.pool.connection() as conn:
            row = conn.execute(NOW_SQL).fetchone()
            assert row is not None
            rows = conn.execute(ADOPT_SQL, (self.max_layers, self._registered_since)).fetchall()
        self._registered_since = row[0]
        adopted = [str(r[0]) for r in rows]
        if adopted:
            logger.info("registered searches adopted for low-zoom layers: %s", adopted)
        return adopted

    def kept(self) -> list[Layer]:
        """Every layer kept, most recently used first."""
        with self.pool.connection() as conn:
            rows = conn.execute(KEPT_SQL).fetchall()
        return [Layer.of_search(str(search), collections) for search, collections in rows]

    def drop_idle(self) -> list[str]:
        """Drop the layers unused for `idle_s` (and their tiles); the searches dropped."""
        with self.pool.connection() as conn:
            dropped = [str(r[0]) for r in conn.execute(DROP_IDLE_SQL, (self.idle_s,)).fetchall()]
        if dropped:
            logger.info("search layers unused for %.0f s dropped: %s", self.idle_s, dropped)
        return dropped
