"""What a pyramid holds (`Layer`), how often items under a tile changed (`Generation`), and what
a request was answered with when the stored tiles were not current (`Behind`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import morecantile

TILE_SIZE = 256
TMS_ID = "WebMercatorQuad"
WEB_MERCATOR = morecantile.tms.get(TMS_ID)


@dataclass(frozen=True)
class Layer:
    """What a pyramid holds: a collection's "latest, least cloudy first" mosaic (`name`: the
    collection), or a registered search's mosaic (`name`: its pgSTAC hash)."""

    name: str
    collections: tuple[str, ...] | None
    """The collections whose items it shows; None: every collection (a search naming none)."""
    search: bool = False

    @classmethod
    def of_collection(cls, collection: str) -> Layer:
        """A collection's own mosaic."""
        return cls(collection, (collection,))

    @classmethod
    def of_search(cls, search: str, collections: Sequence[str] | None) -> Layer:
        """A pgSTAC search's mosaic, reading `collections` (None: all)."""
        return cls(search, tuple(sorted(collections)) if collections else None, search=True)

    @property
    def lock_name(self) -> str:
        """Its name among all layers (a collection may be named like a search hash)."""
        return f"search:{self.name}" if self.search else self.name


@dataclass
class Behind:
    """The stored tiles a request was answered with while they were behind their tile's
    generation (the refresher renders them anew), or in place of a tile not built yet
    (`partial`), and how much longer the answer may be used."""

    tiles: list[tuple[str, str, int, int, int, int]] = field(default_factory=list)
    """(layer, asset, z, x, y, generation the stored tile was rendered at; -1: not built)."""
    max_age_s: float = math.inf
    partial: bool = False
    """Whether a tile was not built yet: the answer shows only what is stored under it."""
    layer_kept: bool | None = None
    """Whether a search's layer answers, as the tile cache decided for the ETag (None: not
    decided there; the pyramid asks its search layers)."""

    def note(self, tile: tuple[str, str, int, int, int, int], left_s: float) -> None:
        """One stored tile served behind, usable for `left_s` more seconds."""
        self.tiles.append(tile)
        self.max_age_s = min(self.max_age_s, left_s)


@dataclass(frozen=True)
class Generation:
    """How often items under a tile changed (0: never any item there), and when last."""

    generation: int
    changed_at: datetime | None
