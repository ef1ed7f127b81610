"""Each collection's low-zoom pyramid: its "latest, least cloudy first" mosaic as raw pixel values
for every WebMercatorQuad tile from z0 to the pyramid's deepest level, kept in the database.

A z5 tile over thousands of scenes cannot read them all (seconds per tile, and pgSTAC stops at
100 scenes per search by default, leaving the rest of the tile empty). The deepest level (z8, a
few scenes across per tile) is rendered from the scenes by the mosaic reader; every level above
is the average of the four tiles below it. Raw values, not rendered images: any preset,
expression, stretch or colour map applies to them exactly as to scenes.

Freshness: migration 0011 counts, per collection and tile, the writes of items under it
(`csdr.tile_generations`, folded from a trigger's change rows). A stored tile is used only while
it was rendered at the tile's current generation; otherwise it is rendered again, from its four
children (only the stale ones again in turn) down to the scenes under the changed area. A change
is therefore seen by the next request, at the cost of the changed branch only (seconds at z5).
The refresher thread renders changed branches ahead of requests (`refresh`), and while it does,
a request gets the stored tile as it was, under an ETag of its own and a max-age that ends when
the first change it does not show is one refresher interval old (migration 0013): a removed or
re-ingested scene stays on the map no longer than that. Without a refresher, every request
waits for its branch. TRUNCATE of the items and a collection's deletion drop the stored tiles.

Access: a pyramid holds one collection's scenes and is served only on that collection's own
mosaic route, which csdr_tiler.access answers 404 to callers who may not see the collection.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import morecantile
import numpy as np
from cachetools import LRUCache
from psycopg_pool import ConnectionPool
from rio_tiler.errors import NoAssetFoundError
from rio_tiler.models import ImageData
from rio_tiler.mosaic.methods.defaults import FirstMethod

logger = logging.getLogger(__name__)

TILE_SIZE = 256
TMS_ID = "WebMercatorQuad"
WEB_MERCATOR = morecantile.tms.get(TMS_ID)

MAX_ZOOM_SQL = "SELECT csdr.pyramid_max_zoom()"
FOLD_SQL = "SELECT csdr.fold_tile_changes() WHERE EXISTS (SELECT 1 FROM csdr.tile_changes)"
GENERATIONS_SQL = """
    SELECT collection, generation, changed_at FROM csdr.tile_generations
    WHERE collection = ANY(%s) AND z = %s AND x = %s AND y = %s
"""
# With how long ago the first change its pixels may not show happened (migration 0013).
STORED_SQL = """
    SELECT generation, dtype, bands, data, extract(epoch FROM clock_timestamp() - stale_since)
    FROM csdr.pyramid_tiles
    WHERE collection = %s AND asset = %s AND z = %s AND x = %s AND y = %s
"""
STORE_SQL = """
    INSERT INTO csdr.pyramid_tiles AS p (collection, asset, z, x, y, generation, dtype, bands, data)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (collection, asset, z, x, y) DO UPDATE
        SET generation = excluded.generation, dtype = excluded.dtype, bands = excluded.bands,
            data = excluded.data, rendered_at = now(), stale_since = NULL
        WHERE p.generation < excluded.generation
"""
# Pyramids whose top tile is older than the collection's top generation, by asset stored.
STALE_SQL = """
    SELECT p.collection, p.asset FROM csdr.pyramid_tiles p
    JOIN csdr.tile_generations g USING (collection, z, x, y)
    WHERE p.z = 0 AND p.generation < g.generation
"""
# Collections with items and no pyramid yet.
UNBUILT_SQL = """
    SELECT g.collection FROM csdr.tile_generations g
    WHERE g.z = 0 AND NOT EXISTS (
        SELECT 1 FROM csdr.pyramid_tiles p WHERE p.collection = g.collection AND p.z = 0
    )
"""
# One refresher per pyramid across the node's tiler processes.
TRY_LOCK_SQL = "SELECT pg_try_advisory_lock(hashtext('csdr-pyramid'), hashtext(%s))"
UNLOCK_SQL = "SELECT pg_advisory_unlock(hashtext('csdr-pyramid'), hashtext(%s))"
# Tile-time options with which the stored values are what the scenes would give.
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "tilesize": (None, TILE_SIZE),
    "buffer": (None, 0, 0.0),
    "padding": (None, 0),
    "nodata": (None,),
    "unscale": (None, False),
    "asset_as_band": (None, False),
    "vrt_options": (None, {}),
}
# Options that do not change the values: resampling applies when reading scenes (the pyramid
# averages), threads and search limits concern how scenes are read.
IGNORED = ("resampling_method", "reproject_method", "threads", "pixel_selection", "expression")

RenderBase = Callable[[str, str, int, int, int], ImageData | None]


@dataclass(frozen=True)
class Raster:
    """One stored tile: bands of raw values and where they are valid."""

    data: np.ndarray  # (bands, height, width)
    valid: np.ndarray  # (height, width) bool

    def encode(self) -> bytes:
        """The bands, then the packed mask, zlib-compressed."""
        raw = np.ascontiguousarray(self.data).tobytes() + np.packbits(self.valid).tobytes()
        return zlib.compress(raw, 1)

    @classmethod
    def decode(cls, blob: bytes, dtype: str, bands: int) -> Raster:
        """The inverse of `encode` for a TILE_SIZE tile."""
        raw = zlib.decompress(blob)
        size = bands * TILE_SIZE * TILE_SIZE * np.dtype(dtype).itemsize
        data = np.frombuffer(raw[:size], dtype=dtype).reshape(bands, TILE_SIZE, TILE_SIZE)
        bits = np.unpackbits(np.frombuffer(raw[size:], dtype="uint8"))
        return cls(data, bits[: TILE_SIZE * TILE_SIZE].reshape(TILE_SIZE, TILE_SIZE).astype(bool))

    @classmethod
    def from_image(cls, image: ImageData) -> Raster:
        """The values of a rendered mosaic tile; valid where every band is."""
        mask = np.ma.getmaskarray(image.array)
        valid = np.logical_not(mask.any(axis=0))
        return cls(np.asarray(image.array.data), valid)


def downsample(children: Sequence[Raster | None]) -> Raster | None:
    """The parent of four tiles (top-left, top-right, bottom-left, bottom-right; None where no
    scene lies): each pixel the mean of the valid pixels of its 2 x 2 block, valid where any is
    (GDAL's AVERAGE overviews do the same within a COG)."""
    present = [c for c in children if c is not None]
    if not present:
        return None
    bands, dtype = present[0].data.shape[0], present[0].data.dtype
    size = 2 * TILE_SIZE
    data = np.zeros((bands, size, size), dtype=dtype)
    valid = np.zeros((size, size), dtype=bool)
    for i, child in enumerate(children):
        if child is None:
            continue
        row, col = divmod(i, 2)
        rows = slice(row * TILE_SIZE, (row + 1) * TILE_SIZE)
        cols = slice(col * TILE_SIZE, (col + 1) * TILE_SIZE)
        data[:, rows, cols] = child.data
        valid[rows, cols] = child.valid
    blocks = valid.reshape(TILE_SIZE, 2, TILE_SIZE, 2)
    count = blocks.sum(axis=(1, 3))
    sums = (data.reshape(bands, TILE_SIZE, 2, TILE_SIZE, 2) * blocks[None]).sum(
        axis=(2, 4), dtype="float64"
    )
    mean = np.divide(sums, count, out=np.zeros_like(sums), where=count > 0)
    if np.issubdtype(dtype, np.integer):
        mean = np.rint(mean)
    return Raster(mean.astype(dtype), count > 0)


def mosaic(rasters: Sequence[Sequence[Raster | None]]) -> Raster | None:
    """Tiles side by side (rows of columns) as one raster; None where all are empty."""
    present = [r for row in rasters for r in row if r is not None]
    if not present:
        return None
    bands, dtype = present[0].data.shape[0], present[0].data.dtype
    n = len(rasters)
    data = np.zeros((bands, n * TILE_SIZE, n * TILE_SIZE), dtype=dtype)
    valid = np.zeros((n * TILE_SIZE, n * TILE_SIZE), dtype=bool)
    for r, row in enumerate(rasters):
        for c, raster in enumerate(row):
            if raster is not None:
                rows = slice(r * TILE_SIZE, (r + 1) * TILE_SIZE)
                cols = slice(c * TILE_SIZE, (c + 1) * TILE_SIZE)
                data[:, rows, cols] = raster.data
                valid[rows, cols] = raster.valid
    return Raster(data, valid)


@dataclass
class Behind:
    """The stored tiles a request was answered with while they were behind their tile's
    generation (the refresher renders them anew), and how much longer the answer may be used."""

    tiles: list[tuple[str, str, int, int, int, int]] = field(default_factory=list)
    """(collection, asset, z, x, y, generation the stored tile was rendered at)."""
    max_age_s: float = math.inf

    def note(self, tile: tuple[str, str, int, int, int, int], left_s: float) -> None:
        """One stored tile served behind, usable for `left_s` more seconds."""
        self.tiles.append(tile)
        self.max_age_s = min(self.max_age_s, left_s)


@dataclass(frozen=True)
class Generation:
    """How often items under a tile changed (0: never any item there), and when last."""

    generation: int
    changed_at: datetime | None


def asset_choice(assets: Any) -> list[tuple[str, list[int] | None]] | None:
    """titiler's `assets` as (name, 1-based band indexes or None for all); None when an asset
    carries options the pyramid cannot apply."""
    if not assets:
        return None
    choice: list[tuple[str, list[int] | None]] = []
    for asset in assets if isinstance(assets, list | tuple) else [assets]:
        if isinstance(asset, str):
            choice.append((asset, None))
        elif isinstance(asset, dict) and set(asset) <= {"name", "indexes"} and "name" in asset:
            indexes = asset.get("indexes")
            choice.append((asset["name"], list(indexes) if indexes else None))
        else:
            return None
    return choice


def neutral(options: dict[str, Any]) -> bool:
    """Whether the tile options leave the values as stored (see NEUTRAL and IGNORED)."""
    for name, value in options.items():
        if name in NEUTRAL:
            if value not in NEUTRAL[name]:
                return False
        elif name not in IGNORED and name != "assets" and value not in (None, False):
            return False
    selection = options.get("pixel_selection")
    return selection is None or selection is FirstMethod or isinstance(selection, FirstMethod)


class Pyramid:
    """Stored low-zoom tiles of every collection, read and repaired through `pool`."""

    def __init__(
        self,
        pool: ConnectionPool,
        render_base: RenderBase,
        cache_tiles: int,
        behind_s: float = 0.0,
    ) -> None:
        """`render_base(collection, asset, z, x, y)` renders a deepest-level tile from the
        scenes (None: no scene there); up to `cache_tiles` decoded tiles stay in memory; a
        request may get a stored tile behind its generation for `behind_s` seconds after the
        first change it does not show (0: never; see `tile`)."""
        self.pool = pool
        self.render_base = render_base
        self.behind_s = behind_s
        self.on_behind: Callable[[], None] | None = None
        """Called when a request got a tile behind its generation (wakes the refresher)."""
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

    def _generation(self, collection: str, z: int, x: int, y: int) -> int:
        with self.pool.connection() as conn:
            row = conn.execute(GENERATIONS_SQL, ([collection], z, x, y)).fetchone()
        return int(row[1]) if row else 0

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

    def tile(
        self, collection: str, asset: str, z: int, x: int, y: int, behind: Behind | None = None
    ) -> Raster | None:
        """The current values of one pyramid tile (None: no scene there), repaired if stale.

        With `behind` (a request's), a stored tile behind its generation is answered as it is,
        noted in `behind`, while the first change it does not show is younger than `behind_s`:
        the refresher renders the branch meanwhile (woken now), and the request does not wait
        seconds for it. Otherwise the stale branch is rendered before answering.
        """
        generation = self._generation(collection, z, x, y)
        if generation == 0:
            return None
        key = (collection, asset, z, x, y, generation)
        with self._cache_lock:
            if key in self._cache:
                return self._cache[key]
        if behind is not None and self.behind_s > 0:
            with self.pool.connection() as conn:
                row = conn.execute(STORED_SQL, (collection, asset, z, x, y)).fetchone()
            if row is not None and int(row[0]) < generation and row[4] is not None:
                left_s = self.behind_s - float(row[4])
                if left_s > 0:
                    behind.note((*key[:-1], int(row[0])), left_s)
                    if self.on_behind is not None:
                        self.on_behind()
                    return Raster.decode(row[3], row[1], row[2]) if row[3] is not None else None
        with self._locked(key[:-1]):
            with self._cache_lock:
                if key in self._cache:
                    return self._cache[key]
            with self.pool.connection() as conn:
                row = conn.execute(STORED_SQL, (collection, asset, z, x, y)).fetchone()
            if row is not None and int(row[0]) >= generation:
                raster = Raster.decode(row[3], row[1], row[2]) if row[3] is not None else None
            else:
                raster = self._render(collection, asset, z, x, y)
                self._store(collection, asset, z, x, y, generation, raster)
        with self._cache_lock:
            self._cache[key] = raster
        return raster

    def _render(self, collection: str, asset: str, z: int, x: int, y: int) -> Raster | None:
        if z >= self.max_zoom:
            image = self.render_base(collection, asset, z, x, y)
            return Raster.from_image(image) if image is not None else None
        children = [
            self.tile(collection, asset, z + 1, 2 * x + dx, 2 * y + dy)
            for dy in (0, 1)
            for dx in (0, 1)
        ]
        return downsample(children)

    def _store(
        self,
        collection: str,
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
        with self.pool.connection() as conn:
            conn.execute(STORE_SQL, (collection, asset, z, x, y, generation, *values))

    def region(
        self,
        collection: str,
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
                [
                    self.tile(collection, asset, level, x * n + c, y * n + r, behind)
                    for c in range(n)
                ]
                for r in range(n)
            ]
        )

    def image(
        self,
        collection: str,
        tms: morecantile.TileMatrixSet,
        x: int,
        y: int,
        z: int,
        options: dict[str, Any],
        behind: Behind | None = None,
    ) -> ImageData | None:
        """The tile as the mosaic reader would give it, from the pyramid; None when the pyramid
        cannot answer it (deeper than its levels, another tile matrix set, options that change
        the values), so the scenes are read instead. Raises NoAssetFoundError where no scene is.
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
        level = z + int(steps)
        arrays, names = [], []
        for asset, indexes in choice:
            raster = self.region(collection, asset, z, x, y, level, behind)
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

    def stale(self, assets_of: Callable[[str], Sequence[str]]) -> list[tuple[str, str]]:
        """(collection, asset) pyramids whose top tile is behind the collection's changes, and
        those of collections with none yet (for the assets `assets_of` the collection)."""
        with self.pool.connection() as conn:
            conn.execute(FOLD_SQL)
            stale = [(str(c), str(a)) for c, a in conn.execute(STALE_SQL).fetchall()]
            unbuilt = [str(c) for (c,) in conn.execute(UNBUILT_SQL).fetchall()]
        for collection in unbuilt:
            stale += [(collection, asset) for asset in assets_of(collection)]
        return stale

    def refresh(self, collection: str, asset: str) -> float | None:
        """Render every stale tile of one pyramid (from z0 down the changed branches); the
        seconds it took, or None when another process is refreshing it."""
        start = time.perf_counter()
        name = f"{collection}/{asset}"
        with self.pool.connection() as conn:
            row = conn.execute(TRY_LOCK_SQL, (name,)).fetchone()
            if not row or not row[0]:
                return None
            try:
                conn.execute(FOLD_SQL)
                self.tile(collection, asset, 0, 0, 0)
            finally:
                conn.execute(UNLOCK_SQL, (name,))
        return time.perf_counter() - start


class Refresher:
    """A daemon thread that refreshes stale pyramids every `interval_s` seconds, and at once
    when a request got a tile behind its generation, so that viewers after an ingest neither
    wait for the changed branch nor see the old pixels for long."""

    def __init__(
        self, pyramid: Pyramid, assets_of: Callable[[str], Sequence[str]], interval_s: float
    ) -> None:
        """Refresh `pyramid` every `interval_s` seconds once started; `assets_of` names the
        assets a new collection's pyramid holds (those of its presets)."""
        self.pyramid = pyramid
        self.assets_of = assets_of
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
                for collection, asset in self.pyramid.stale(self.assets_of):
                    if self._stopping:
                        return
                    seconds = self.pyramid.refresh(collection, asset)
                    if seconds is not None:
                        logger.info("pyramid %s/%s refreshed in %.1f s", collection, asset, seconds)
            except Exception:  # keep refreshing after a database hiccup; requests repair anyway
                logger.exception("pyramid refresh failed")
