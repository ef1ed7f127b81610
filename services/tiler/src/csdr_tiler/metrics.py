"""The tiler's own metrics: the open COGs kept between requests (csdr_tiler.datasets), GDAL's
block cache, and the database pools (read: titiler-pgstac's, on the replica when there is one;
write: csdr_tiler.db). Tiles answered from the response cache are the 200s of csdr_service.metrics'
`csdr_http_answered_before_routing`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from csdr_service.metrics import Metrics
from csdr_tiler.datasets import POOL
from csdr_tiler.libgdal import block_cache


class TilerMetrics:
    """The gauges the tiler adds to its `Metrics`."""

    def __init__(self, metrics: Metrics, pools: Callable[[], dict[str, Any]]) -> None:
        """Register on `metrics`; `pools()` are the read and write pools once the lifespan
        opened them (csdr_tiler.db)."""
        self.open_datasets = metrics.gauge(
            "csdr_tiler_open_datasets", "COGs open and idle between requests (csdr_tiler.datasets)."
        )
        self.open_datasets_max = metrics.gauge(
            "csdr_tiler_open_datasets_max",
            "The most idle COGs kept open (CSDR_TILER_OPEN_DATASETS).",
        )
        self.block_cache = metrics.gauge(
            "csdr_tiler_gdal_block_cache_bytes", "GDAL's raster block cache in use, in bytes."
        )
        self.block_cache_max = metrics.gauge(
            "csdr_tiler_gdal_block_cache_max_bytes",
            "The bound of GDAL's raster block cache (CSDR_TILER_GDAL_CACHE_MB), in bytes.",
        )
        metrics.on_scrape(self.refresh)
        metrics.watch_pools(pools)

    async def refresh(self) -> None:
        """Read the pool of open COGs."""
        self.open_datasets.set(POOL.idle())
        self.open_datasets_max.set(POOL.max_idle)
        used, bound = block_cache()
        self.block_cache.set(used)
        self.block_cache_max.set(bound)
