"""The tile matrix sets the tiler serves, shared rather than copied for every request.

morecantile's registry returns a deep copy of the tile matrix set on every `get` (0.4 ms here,
twice per tile: titiler's tile route and our tile check), to protect its instances from callers
that change them. Nothing in the tiler changes one, and rio-tiler itself shares its Web Mercator
instance between threads (`rio_tiler.constants.WEB_MERCATOR_TMS`).
"""

from copy import copy

from morecantile import TileMatrixSet
from morecantile.defaults import TileMatrixSets, default_tms

WEB_MERCATOR_ID = "WebMercatorQuad"


class SharedTileMatrixSets(TileMatrixSets):
    """morecantile's registry, handing out the one loaded instance of each set."""

    def get(self, identifier: str) -> TileMatrixSet:
        """The tile matrix set (loaded on first use); InvalidIdentifier for an unknown one."""
        found = self.tilematrixsets.get(identifier)
        if isinstance(found, TileMatrixSet):
            return found
        loaded = super().get(identifier)  # validates the file and keeps the parsed set
        self.tilematrixsets[identifier] = loaded
        return loaded


TILE_MATRIX_SETS = SharedTileMatrixSets(copy(default_tms))
WEB_MERCATOR = TILE_MATRIX_SETS.get(WEB_MERCATOR_ID)
# Presets render for QGIS and web maps: Web Mercator only.
PRESET_TMS = SharedTileMatrixSets({WEB_MERCATOR_ID: WEB_MERCATOR})
