"""The refresher thread: renders changed pyramids ahead of requests."""

from __future__ import annotations

import logging
import threading

from csdr_tiler.pyramid.layers import Layer
from csdr_tiler.pyramid.tiles import Pyramid

logger = logging.getLogger(__name__)


class Refresher:
    """A daemon thread that refreshes stale pyramids every `interval_s` seconds, and at once
    when a request got a tile behind its generation or not built, so that viewers after an
    ingest neither wait for the changed branch nor see the old pixels for long. Tiles requests
    asked for come first, then whole layers; search layers unused for long are dropped."""

    def __init__(self, pyramid: Pyramid, interval_s: float) -> None:
        """Refresh `pyramid` every `interval_s` seconds once started."""
        self.pyramid = pyramid
        self.interval_s = interval_s
        self._stopping = False
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pyramid-refresher", daemon=True)

    def start(self) -> None:
        """Begin refreshing in the background (and whenever the pyramid asks for it)."""
        self.pyramid.on_behind = self._wake.set
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current refresh."""
        self.pyramid.on_behind = None
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stopping:
                return
            try:
                self.refresh_once()
            except Exception:  # keep refreshing after a database hiccup; requests repair anyway
                logger.exception("pyramid refresh failed")

    def refresh_once(self) -> None:
        """One round: idle search layers dropped, newly registered ones adopted where there is
        room, then each stale layer, the tiles requests wanted first (before each layer, so
        that none waits for a whole round)."""
        self._refresh_wanted()
        if self.pyramid.searches is not None:
            self.pyramid.searches.drop_idle()
            self.pyramid.searches.adopt_registered()
        for layer, asset in self.pyramid.stale():
            if self._stopping:
                return
            self._refresh_wanted()
            self._refresh(layer, asset)

    def _refresh_wanted(self) -> None:
        for layer, asset, z, x, y in self.pyramid.take_wanted():
            if self._stopping:
                return
            self._refresh(layer, asset, (z, x, y))

    def _refresh(self, layer: Layer, asset: str, tile: tuple[int, int, int] = (0, 0, 0)) -> None:
        seconds = self.pyramid.refresh(layer, asset, tile)
        if seconds is not None and seconds > 0.5:
            z, x, y = tile
            logger.info(
                "pyramid %s/%s refreshed from %d/%d/%d in %.1f s",
                layer.lock_name,
                asset,
                z,
                x,
                y,
                seconds,
            )
