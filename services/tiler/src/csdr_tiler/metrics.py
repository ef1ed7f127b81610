"""The tiler's own metrics: the open COGs kept between requests (csdr_tiler.datasets), and the
database pools (read: titiler-pgstac's, on the replica when there is one; write: csdr_tiler.db).
Tiles answered from the response cache are the 200s of csdr_service.metrics'
`csdr_http_answered_before_routing`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from csdr_service.metrics import Metrics
from csdr_tiler.datasets import POOL


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
        metrics.on_scrape(self.refresh)
        metrics.watch_pools(pools)

    async def refresh(self) -> None:
        """Read the pool of open COGs."""
        self.open_datasets.set(POOL.idle())
        self.open_datasets_max.set(POOL.max_idle)
