"""Low-zoom pyramids of mosaics ("layers"): each collection's "latest, least cloudy first" mosaic
and each registered search's mosaic in use, as raw pixel values for every WebMercatorQuad tile
from z0 to the pyramid's deepest level, kept in the database.

A z5 tile over thousands of scenes cannot read them all (seconds per tile, and pgSTAC stops at
100 scenes per search by default, leaving the rest of the tile empty). The deepest level (z8, a
few scenes across per tile) is rendered from the scenes by the mosaic reader, through the
layer's own pgSTAC search and order; every level above is the average of the four tiles below
it. Raw values, not rendered images: any preset, expression, stretch or colour map applies to
them exactly as to scenes.

Freshness: migration 0011 counts, per collection and tile, the writes of items under it
(`csdr.tile_generations`, folded from a trigger's change rows); a layer's tile generation is
the sum of those of the collections it reads (every collection's, for a search naming none). A
stored tile is used only while it was rendered at the tile's current generation; otherwise it is
rendered again, from its four children (only the stale ones again in turn) down to the scenes
under the changed area. A change is therefore seen by the next request, at the cost of the
changed branch only (seconds at z5). The refresher thread renders changed branches ahead of
requests (`refresh`), and while it does, a request gets the stored tile as it was, under an
ETag of its own and a max-age that ends when the first change it does not show is one refresher
interval old (migrations 0013, 0014): a removed or re-ingested scene stays on the map no longer
than that. Without a refresher, every request waits for its branch. TRUNCATE of the items and a
collection's deletion drop the stored tiles (and the search layers reading the collection).

Building: a layer's tile never rendered yet is, with a refresher, not rendered on the request
(a z5 tile over 2,000 scenes takes ~50 s): the request gets what is stored so far under the tile
(up to three levels down), marked `partial` with a short max-age, and the refresher renders that
tile's branch first, then the rest of the layer. Without a refresher, the request renders it.

Access: a collection's pyramid holds one collection's scenes and is served only on that
collection's own mosaic route, which csdr_tiler.access answers 404 to callers who may not see
it. A search layer is the search actually run for the caller (csdr_tiler.mosaics: the registered
one, or its copy narrowed to the collections the caller sees), so it holds only scenes the caller
may see. Search layers are bounded in number (csdr_tiler.search_layers).
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
from typing import TYPE_CHECKING, Any

import morecantile
import numpy as np
from cachetools import LRUCache
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg_pool import ConnectionPool
from rio_tiler.errors import NoAssetFoundError
from rio_tiler.models import ImageData
from rio_tiler.mosaic.methods.defaults import FirstMethod

if TYPE_CHECKING:
    from csdr_tiler.search_layers import SearchLayers

logger = logging.getLogger(__name__)

TILE_SIZE = 256
TMS_ID = "WebMercatorQuad"
WEB_MERCATOR = morecantile.tms.get(TMS_ID)
# A tile not built yet is answered from stored tiles at most this many levels below it (4^3 = 64
# tiles at most).
PARTIAL_DEPTH = 3
# Tiles requests found unbuilt, waiting for the refresher (the oldest are forgotten beyond this).
MAX_WANTED = 256


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


MAX_ZOOM_SQL = "SELECT csdr.pyramid_max_zoom()"
FOLD_SQL = "SELECT csdr.fold_tile_changes() WHERE EXISTS (SELECT 1 FROM csdr.tile_changes)"
GENERATIONS_SQL = """
    SELECT collection, generation, changed_at FROM csdr.tile_generations
    WHERE collection = ANY(%s) AND z = %s AND x = %s AND y = %s
"""
# A layer's tile generation: the sum over its collections (migration 0014).
LAYER_GENERATION_SQL = """
    SELECT coalesce(sum(generation), 0) FROM csdr.tile_generations
    WHERE collection = ANY(%s) AND z = %s AND x = %s AND y = %s
"""
EVERY_COLLECTION_GENERATION_SQL = """
    SELECT coalesce(sum(generation), 0) FROM csdr.tile_generations
    WHERE z = %s AND x = %s AND y = %s
"""
# Where each kind of layer keeps its tiles: table and key column.
TILE_TABLES = {False: ("pyramid_tiles", "collection"), True: ("search_pyramid_tiles", "search")}


def _tile_sql(search: bool, template: str) -> sql.Composed:
    table, key = TILE_TABLES[search]
    return sql.SQL(template).format(table=sql.Identifier("csdr", table), key=sql.Identifier(key))


# With how long ago the first change its pixels may not show happened (migration 0013).
STORED_SQL = {
    kind: _tile_sql(
        kind,
        """
        SELECT generation, dtype, bands, data, extract(epoch FROM clock_timestamp() - stale_since)
        FROM {table} WHERE {key} = %s AND asset = %s AND z = %s AND x = %s AND y = %s
        """,
    )
    for kind in TILE_TABLES
}
STORED_GENERATION_SQL = {
    kind: _tile_sql(
        kind,
        "SELECT generation FROM {table}"
        " WHERE {key} = %s AND asset = %s AND z = %s AND x = %s AND y = %s",
    )
    for kind in TILE_TABLES
}
STORE_SQL = {
    kind: _tile_sql(
        kind,
        """
        INSERT INTO {table} AS p ({key}, asset, z, x, y, generation, dtype, bands, data)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT ({key}, asset, z, x, y) DO UPDATE
            SET generation = excluded.generation, dtype = excluded.dtype, bands = excluded.bands,
                data = excluded.data, rendered_at = now(), stale_since = NULL
            WHERE p.generation < excluded.generation
        """,
    )
    for kind in TILE_TABLES
}
# The stored tiles under one tile (levels given by the ranges), except those behind a change
# older than the given seconds (which may no longer be shown): where and at which generation.
DESCENDANTS_SQL = {
    kind: _tile_sql(
        kind,
        """
        SELECT t.z, t.x, t.y, t.generation
        FROM {table} t
        JOIN (SELECT * FROM unnest(%s::int[], %s::int[], %s::int[], %s::int[], %s::int[]))
            AS r(z, x0, x1, y0, y1)
            ON t.z = r.z AND t.x BETWEEN r.x0 AND r.x1 AND t.y BETWEEN r.y0 AND r.y1
        WHERE t.{key} = %s AND t.asset = %s
          AND (t.stale_since IS NULL
               OR clock_timestamp() - t.stale_since < make_interval(secs => %s))
        """,
    )
    for kind in TILE_TABLES
}
# The values of some stored tiles (z, x, y as arrays).
VALUES_SQL = {
    kind: _tile_sql(
        kind,
        """
        SELECT t.z, t.x, t.y, t.dtype, t.bands, t.data
        FROM {table} t
        JOIN (SELECT * FROM unnest(%s::int[], %s::int[], %s::int[])) AS r(z, x, y)
            ON t.z = r.z AND t.x = r.x AND t.y = r.y
        WHERE t.{key} = %s AND t.asset = %s
        """,
    )
    for kind in TILE_TABLES
}
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

RenderBase = Callable[[Layer, str, int, int, int], ImageData | None]
AssetsOf = Callable[[Layer], Sequence[str]]


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
    def stored(cls, blob: bytes | None, dtype: str, bands: int) -> Raster | None:
        """A stored tile's values (None: no scene there)."""
        return cls.decode(blob, dtype, bands) if blob is not None else None

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
    generation (the refresher renders them anew), or in place of a tile not built yet
    (`partial`), and how much longer the answer may be used."""

    tiles: list[tuple[str, str, int, int, int, int]] = field(default_factory=list)
    """(layer, asset, z, x, y, generation the stored tile was rendered at; -1: not built)."""
    max_age_s: float = math.inf
    partial: bool = False
    """Whether a tile was not built yet: the answer shows only what is stored under it."""
    layer_kept: bool | None = None
    """Whether a search's layer answers, as the tile cache decided for the ETag (None: not
    decided there; the pyramid asks csdr_tiler.search_layers)."""

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
        none yet: collections with items, search layers kept (csdr_tiler.search_layers)."""
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
