"""`Pyramid`: the stored low-zoom tiles of every layer, read, repaired when stale, and
answered as the mosaic reader's image (see docs/tiler-internals.md for freshness and building)."""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import morecantile
import numpy as np
from cachetools import LRUCache
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool
from rio_tiler.errors import NoAssetFoundError
from rio_tiler.models import ImageData

from csdr_tiler.pyramid.layers import TILE_SIZE, TMS_ID, Behind, Generation, Layer
from csdr_tiler.pyramid.rasters import Raster, asset_choice, downsample, mosaic, neutral
from csdr_tiler.pyramid.search_layers import SearchLayers
from csdr_tiler.pyramid.storage import (
    DESCENDANTS_SQL,
    EVERY_COLLECTION_GENERATION_SQL,
    FOLD_SQL,
    GENERATIONS_SQL,
    LAYER_GENERATION_SQL,
    MAX_ZOOM_SQL,
    STALE_SQL,
    STORE_SQL,
    STORED_GENERATION_SQL,
    STORED_SQL,
    TRY_LOCK_SQL,
    UNBUILT_SQL,
    UNLOCK_SQL,
    VALUES_SQL,
)

logger = logging.getLogger(__name__)

# A tile not built yet is answered from stored tiles at most this many levels below it (4^3 = 64
# tiles at most).
PARTIAL_DEPTH = 3
# Tiles requests found unbuilt, waiting for the refresher (the oldest are forgotten beyond this).
MAX_WANTED = 256


RenderBase = Callable[[Layer, str, int, int, int], ImageData | None]
AssetsOf = Callable[[Layer], Sequence[str]]


class Pyramid:
    """Stored low-zoom tiles of every layer, read and repaired through `pool`."""

    def __init__(
        self,
        pool: ConnectionPool,
        render_base: RenderBase,
        cache_tiles: int,
        assets_of: AssetsOf,
        behind_s: float = 0.0,
        searches: SearchLayers | None = None,
    ) -> None:
        """`render_base(layer, asset, z, x, y)` renders a deepest-level tile from the scenes
        (None: no scene there); up to `cache_tiles` decoded tiles stay in memory; `assets_of`
        names the assets a layer holds (those of its collections' presets); a request may get a
        stored tile behind its generation for `behind_s` seconds after the first change it does
        not show, and a tile not built yet from what is stored under it (0: never; see `tile`);
        `searches` admits search layers (None: none)."""
        self.pool = pool
        self.render_base = render_base
        self.assets_of = assets_of
        self.behind_s = behind_s
        self.searches = searches
        self.on_behind: Callable[[], None] | None = None
        """Called when a request got a tile behind its generation or not built (wakes the
        refresher)."""
        with pool.connection() as conn:
            row = conn.execute(MAX_ZOOM_SQL).fetchone()
        assert row is not None
        self.max_zoom = int(row[0])
        self._cache: LRUCache[tuple[Any, ...], Raster | None] = LRUCache(maxsize=cache_tiles)
        self._cache_lock = threading.Lock()
        self._tile_locks: weakref.WeakValueDictionary[tuple[Any, ...], threading.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._locks_lock = threading.Lock()
        self._wanted: dict[tuple[Layer, str, int, int, int], None] = {}
        self._wanted_lock = threading.Lock()

    def generations(
        self, collections: Sequence[str], z: int, x: int, y: int
    ) -> dict[str, Generation]:
        """Each collection's generation of a tile at z <= max_zoom, pending changes folded in
        first (collections with no item there ever are left out)."""
        with self.pool.connection() as conn:
            conn.execute(FOLD_SQL)
            rows = conn.execute(GENERATIONS_SQL, (list(collections), z, x, y)).fetchall()
        return {str(c): Generation(int(g), at) for c, g, at in rows}

    def versioning_tile(self, z: int, x: int, y: int) -> tuple[int, int, int]:
        """The tile whose generation versions tile (z, x, y): itself, or its ancestor at the
        deepest level (every item under a tile lies under its ancestors)."""
        if z <= self.max_zoom:
            return z, x, y
        shift = z - self.max_zoom
        return self.max_zoom, x >> shift, y >> shift

    def generation(self, layer: Layer, z: int, x: int, y: int) -> int:
        """The layer's generation of a tile: the sum of its collections' (0: never any item
        there; generations only grow, so the sum changes whenever one of them does)."""
        with self.pool.connection() as conn:
            if layer.collections is None:
                row = conn.execute(EVERY_COLLECTION_GENERATION_SQL, (z, x, y)).fetchone()
            else:
                row = conn.execute(
                    LAYER_GENERATION_SQL, (list(layer.collections), z, x, y)
                ).fetchone()
        return int(row[0]) if row else 0

    @contextmanager
    def _locked(self, key: tuple[Any, ...]) -> Iterator[None]:
        """One thread renders a given tile at a time (parents lock before children: no cycle)."""
        with self._locks_lock:
            lock = self._tile_locks.get(key)
            if lock is None:
                lock = threading.Lock()
                self._tile_locks[key] = lock
        with lock:
            yield

    def _stored(self, layer: Layer, asset: str, z: int, x: int, y: int) -> Any:
        with self.pool.connection() as conn:
            return conn.execute(STORED_SQL[layer.search], (layer.name, asset, z, x, y)).fetchone()

    def tile(
        self, layer: Layer, asset: str, z: int, x: int, y: int, behind: Behind | None = None
    ) -> Raster | None:
        """The current values of one pyramid tile (None: no scene there), repaired if stale.

        With `behind` (a request's) and `behind_s` > 0: a stored tile behind its generation is
        answered as it is, noted in `behind`, while the first change it does not show is
        younger than `behind_s`, and a tile never stored is answered from what is stored under
        it (`partial`); the refresher renders the tile meanwhile (woken now), and the request
        does not wait seconds for it. Otherwise the stale branch is rendered before answering.
        """
        generation = self.generation(layer, z, x, y)
        if generation == 0:
            return None
        key = (layer, asset, z, x, y, generation)
        with self._cache_lock:
            if key in self._cache:
                return self._cache[key]
        if behind is not None and self.behind_s > 0:
            row = self._stored(layer, asset, z, x, y)
            if row is None:
                return self._partial(layer, asset, z, x, y, behind)
            if int(row[0]) >= generation:
                raster = Raster.stored(row[3], row[1], row[2])
                with self._cache_lock:
                    self._cache[key] = raster
                return raster
            if row[4] is not None:
                left_s = self.behind_s - float(row[4])
                if left_s > 0:
                    behind.note((layer.lock_name, asset, z, x, y, int(row[0])), left_s)
                    self._want(layer, asset, z, x, y)
                    return Raster.stored(row[3], row[1], row[2])
        with self._locked(key[:-1]):
            with self._cache_lock:
                if key in self._cache:
                    return self._cache[key]
            row = self._stored(layer, asset, z, x, y)
            if row is not None and int(row[0]) >= generation:
                raster = Raster.stored(row[3], row[1], row[2])
            else:
                raster = self._render(layer, asset, z, x, y)
                self._store(layer, asset, z, x, y, generation, raster)
        with self._cache_lock:
            self._cache[key] = raster
        return raster

    def _partial(
        self, layer: Layer, asset: str, z: int, x: int, y: int, behind: Behind
    ) -> Raster | None:
        """A tile not built yet, from the tiles stored under it so far (up to PARTIAL_DEPTH
        levels down, those a change made stale within `behind_s` included)."""
        depth = min(PARTIAL_DEPTH, self.max_zoom - z)
        levels = range(1, depth + 1)
        ranges = (
            [z + d for d in levels],
            [x << d for d in levels],
            [((x + 1) << d) - 1 for d in levels],
            [y << d for d in levels],
            [((y + 1) << d) - 1 for d in levels],
        )
        with self.pool.connection() as conn:
            rows = conn.execute(
                DESCENDANTS_SQL[layer.search], (*ranges, layer.name, asset, self.behind_s)
            ).fetchall()
        built = {(int(tz), int(tx), int(ty)): int(g) for tz, tx, ty, g in rows}
        # Only the shallowest stored tiles are shown: a stored tile holds all below it.
        shown = {
            t: g
            for t, g in built.items()
            if not any((t[0] - d, t[1] >> d, t[2] >> d) in built for d in range(1, t[0] - z))
        }
        stored = self._stored_values(layer, asset, shown)
        for (tz, tx, ty), generation in shown.items():
            behind.note((layer.lock_name, asset, tz, tx, ty, generation), self.behind_s)

        def compose(tz: int, tx: int, ty: int) -> Raster | None:
            if (tz, tx, ty) in stored:
                return stored[(tz, tx, ty)]
            if tz >= z + depth:
                return None
            return downsample(
                [compose(tz + 1, 2 * tx + dx, 2 * ty + dy) for dy in (0, 1) for dx in (0, 1)]
            )

        behind.note((layer.lock_name, asset, z, x, y, -1), self.behind_s)
        behind.partial = True
        self._want(layer, asset, z, x, y)
        return compose(z, x, y) if depth > 0 else None

    def _stored_values(
        self, layer: Layer, asset: str, tiles: dict[tuple[int, int, int], int]
    ) -> dict[tuple[int, int, int], Raster | None]:
        """The values of stored tiles (z, x, y) -> generation, through the tile cache."""
        found: dict[tuple[int, int, int], Raster | None] = {}
        with self._cache_lock:
            for (tz, tx, ty), generation in tiles.items():
                key = (layer, asset, tz, tx, ty, generation)
                if key in self._cache:
                    found[(tz, tx, ty)] = self._cache[key]
        missing = [t for t in tiles if t not in found]
        if missing:
            with self.pool.connection() as conn:
                rows = conn.execute(
                    VALUES_SQL[layer.search],
                    (*(list(c) for c in zip(*missing, strict=True)), layer.name, asset),
                ).fetchall()
            for tz, tx, ty, dtype, bands, data in rows:
                tile = (int(tz), int(tx), int(ty))
                raster = Raster.stored(data, dtype, bands)
                found[tile] = raster
                with self._cache_lock:
                    self._cache[(layer, asset, *tile, tiles[tile])] = raster
        return found

    def _want(self, layer: Layer, asset: str, z: int, x: int, y: int) -> None:
        """Ask the refresher to render this tile first (and wake it)."""
        with self._wanted_lock:
            self._wanted[(layer, asset, z, x, y)] = None
            while len(self._wanted) > MAX_WANTED:
                del self._wanted[next(iter(self._wanted))]
        if self.on_behind is not None:
            self.on_behind()

    def take_wanted(self) -> list[tuple[Layer, str, int, int, int]]:
        """The tiles requests asked for and did not get current, oldest first (then forgotten)."""
        with self._wanted_lock:
            wanted = list(self._wanted)
            self._wanted.clear()
        return wanted

    def _render(self, layer: Layer, asset: str, z: int, x: int, y: int) -> Raster | None:
        if z >= self.max_zoom:
            image = self.render_base(layer, asset, z, x, y)
            return Raster.from_image(image) if image is not None else None
        children = [
            self.tile(layer, asset, z + 1, 2 * x + dx, 2 * y + dy) for dy in (0, 1) for dx in (0, 1)
        ]
        return downsample(children)

    def _store(
        self,
        layer: Layer,
        asset: str,
        z: int,
        x: int,
        y: int,
        generation: int,
        raster: Raster | None,
    ) -> None:
        values = (
            (str(raster.data.dtype), raster.data.shape[0], raster.encode())
            if raster is not None
            else (None, None, None)
        )
        try:
            with self.pool.connection() as conn:
                conn.execute(
                    STORE_SQL[layer.search], (layer.name, asset, z, x, y, generation, *values)
                )
        except pg_errors.ForeignKeyViolation:
            # The search layer was dropped meanwhile (evicted, or its collection deleted).
            logger.info("search layer %s dropped while rendering", layer.name)

    def region(
        self,
        layer: Layer,
        asset: str,
        z: int,
        x: int,
        y: int,
        level: int,
        behind: Behind | None = None,
    ) -> Raster | None:
        """Tile (z, x, y) at the resolution of `level` >= z: 2^(level - z) tiles a side."""
        n = 2 ** (level - z)
        return mosaic(
            [
                [self.tile(layer, asset, level, x * n + c, y * n + r, behind) for c in range(n)]
                for r in range(n)
            ]
        )

    def image(
        self,
        layer: Layer,
        tms: morecantile.TileMatrixSet,
        x: int,
        y: int,
        z: int,
        options: dict[str, Any],
        behind: Behind | None = None,
    ) -> ImageData | None:
        """The tile as the mosaic reader would give it, from the pyramid; None when the pyramid
        cannot answer it (deeper than its levels, another tile matrix set, options that change
        the values, an asset it does not hold, a search layer not admitted), so the scenes are
        read instead. Raises NoAssetFoundError where no scene is (or none is built yet).
        `behind`: a request's, which may be answered from stored tiles behind (see `tile`).
        """
        tilesize = options.get("tilesize") or TILE_SIZE
        steps = math.log2(tilesize / TILE_SIZE) if tilesize >= TILE_SIZE else -1
        choice = asset_choice(options.get("assets"))
        if (
            tms.id != TMS_ID
            or steps != int(steps)
            or z + int(steps) > self.max_zoom
            or choice is None
            or not neutral({k: v for k, v in options.items() if k != "tilesize"})
        ):
            return None
        if layer.search and self.searches is None:
            return None
        held = set(self.assets_of(layer))
        if any(asset not in held for asset, _ in choice):
            return None
        if layer.search and not self._layer_kept(layer, behind):
            return None
        level = z + int(steps)
        arrays, names = [], []
        for asset, indexes in choice:
            raster = self.region(layer, asset, z, x, y, level, behind)
            if raster is None:
                raise NoAssetFoundError(f"No assets found for tile {z}-{x}-{y}")
            picked = list(range(1, raster.data.shape[0] + 1)) if indexes is None else indexes
            if max(picked) > raster.data.shape[0] or min(picked) < 1:
                return None  # the scene reader names the bad index
            mask = np.broadcast_to(~raster.valid, (len(picked), *raster.valid.shape))
            arrays.append(np.ma.MaskedArray(raster.data[[i - 1 for i in picked]], mask=mask))
            names += [f"{asset}_b{i}" for i in picked]
        image = ImageData(
            np.ma.concatenate(arrays),
            bounds=tms.xy_bounds(morecantile.Tile(x, y, z)),
            crs=tms.rasterio_crs,
            band_descriptions=names,
        )
        image.band_names = [f"b{i + 1}" for i in range(image.count)]
        if expression := options.get("expression"):
            return image.apply_expression(expression)
        return image

    def _layer_kept(self, layer: Layer, behind: Behind | None) -> bool:
        """Whether search `layer` answers: as decided for the request's ETag, else a use of it
        (adopting it if there is room)."""
        if behind is not None and behind.layer_kept is not None:
            return behind.layer_kept
        return self.searches is not None and self.searches.use(layer)

    def stale(self) -> list[tuple[Layer, str]]:
        """(layer, asset) pyramids whose top tile is behind the layer's changes, and those with
        none yet: collections with items, search layers kept (csdr_tiler.pyramid.search_layers)."""
        with self.pool.connection() as conn:
            conn.execute(FOLD_SQL)
            stale = [
                (Layer.of_collection(str(c)), str(a)) for c, a in conn.execute(STALE_SQL).fetchall()
            ]
            unbuilt = [str(c) for (c,) in conn.execute(UNBUILT_SQL).fetchall()]
        for collection in unbuilt:
            layer = Layer.of_collection(collection)
            stale += [(layer, asset) for asset in self.assets_of(layer)]
        for layer in self.searches.kept() if self.searches is not None else []:
            for asset in self.assets_of(layer):
                with self.pool.connection() as conn:
                    row = conn.execute(
                        STORED_GENERATION_SQL[layer.search], (layer.name, asset, 0, 0, 0)
                    ).fetchone()
                if row is None or int(row[0]) < self.generation(layer, 0, 0, 0):
                    stale.append((layer, asset))
        return stale

    def refresh(
        self, layer: Layer, asset: str, tile: tuple[int, int, int] = (0, 0, 0)
    ) -> float | None:
        """Render every stale tile of one pyramid under `tile` (from there down the changed
        branches; by default the whole pyramid); the seconds it took, or None when another
        process is refreshing it."""
        start = time.perf_counter()
        with self.pool.connection() as conn:
            row = conn.execute(TRY_LOCK_SQL, (f"{layer.lock_name}/{asset}",)).fetchone()
            if not row or not row[0]:
                return None
            try:
                conn.execute(FOLD_SQL)
                self.tile(layer, asset, *tile)
            finally:
                conn.execute(UNLOCK_SQL, (f"{layer.lock_name}/{asset}",))
        return time.perf_counter() - start
