"""The tiler's own metrics: the open COGs kept between requests (csdr_tiler.datasets), GDAL's
block cache, the response cache's hits, revalidations and misses (csdr_tiler.caching), and the
database pools (read: titiler-pgstac's, on the replica when there is one; write:
csdr_tiler.db)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from csdr_service.metrics import Metrics
from csdr_tiler.caching import CacheOutcomes
from csdr_tiler.datasets import POOL
from csdr_tiler.libgdal import block_cache


class CacheOutcomesCollector(Collector):
    """`csdr_tiler_tile_cache_total{outcome}`, read from the middleware's counts."""

    def __init__(self, outcomes: CacheOutcomes) -> None:
        """Report `outcomes`."""
        self.outcomes = outcomes

    def collect(self) -> Iterator[CounterMetricFamily]:
        """The counts as one counter family."""
        family = CounterMetricFamily(
            "csdr_tiler_tile_cache",
            "Cacheable tiler answers (item answers, mosaic tiles) by outcome: served from the"
            " response cache (hit), a 304 to If-None-Match (revalidated), or rendered (miss).",
            labels=["outcome"],
        )
        for outcome, n in self.outcomes.counts().items():
            family.add_metric([outcome], n)
        yield family


class TilerMetrics:
    """The gauges the tiler adds to its `Metrics`."""

    def __init__(
        self,
        metrics: Metrics,
        pools: Callable[[], dict[str, Any]],
        outcomes: CacheOutcomes | None = None,
    ) -> None:
        """Register on `metrics`; `pools()` are the read and write pools once the lifespan
        opened them (csdr_tiler.db); `outcomes` are the response cache's (csdr_tiler.caching)."""
        metrics.registry.register(CacheOutcomesCollector(outcomes or CacheOutcomes()))
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
