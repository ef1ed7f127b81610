"""Which registered searches have a low-zoom pyramid (csdr_tiler.pyramid), bounded in number.

A search layer costs database space (every tile from z0 to z8 under its scenes, per asset) and
the refresher's time (a full build over 2,000 scenes takes about a minute), so not every search
gets one: a search is adopted when a low-zoom tile of it is asked for (registering one adopts
nothing, so registration spam costs no background work), up to `max_layers`; when they are all
taken, a new search replaces the least recently used one only if that one has not been used for
`evict_after_s`, else it keeps being read from the scenes, as any mosaic deeper than the pyramid
is. Layers unused for `idle_s` are dropped by the refresher. The rules run in the database
(migration 0014, `csdr.use_search_layer`), so all the node's tiler processes share one bound.
"""

import logging

from psycopg_pool import ConnectionPool

from csdr_tiler.pyramid import Layer

logger = logging.getLogger(__name__)

USE_SQL = "SELECT csdr.use_search_layer(%s, %s, %s, make_interval(secs => %s))"
KEPT_SQL = "SELECT search, collections FROM csdr.search_layers ORDER BY asked_at DESC"
DROP_IDLE_SQL = """
    DELETE FROM csdr.search_layers WHERE asked_at < now() - make_interval(secs => %s)
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

    def use(self, layer: Layer) -> bool:
        """Note a request for one of the layer's tiles, adopting it if there is room; whether
        the layer is kept (False: read its scenes)."""
        collections = list(layer.collections) if layer.collections is not None else None
        with self.pool.connection() as conn:
            row = conn.execute(
                USE_SQL, (layer.name, collections, self.max_layers, self.evict_after_s)
            ).fetchone()
        return bool(row and row[0])

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
