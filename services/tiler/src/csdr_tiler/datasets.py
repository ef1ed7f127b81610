"""Open COGs kept between requests, and the STAC readers that borrow them.

rio-tiler opens every asset for every tile (`rasterio.open`, header and overview parsing, a
rasterio environment set up and torn down) and closes it again, which also throws away GDAL's
block cache for that file: neighbouring tiles decompress the same 512 x 512 blocks again. Here
an opened `Reader` is lent to one thread at a time and put back afterwards, keyed by the file's
identity (path, inode, modification time, size), so a re-ingest that replaces a COG at the same
path opens the new file. Of remote files only the node's own bucket's are kept (`immutable`):
ingest never writes an object twice under one name (csdr_storage); any other object can
change under the same URL without a cheap way to notice.

rio-tiler also recomputes a dataset's native grid in the output CRS for every tile
(`calculate_default_transform`: GDALSuggestedWarpOutput2, which holds the GIL, a sixth of the
GIL time of a tile here) and a tile's bounds in the dataset's CRS three times per tile; their
answers depend only on their arguments, so `remember_transforms` memoizes them.

`ItemReader` (one scene) and `SceneReader` (a scene inside a mosaic) are titiler-pgstac's readers
with their asset reader swapped for the pool's, and, for one asset, the read done in the calling
thread rather than in a thread pool created for that one read. Both note each asset whose pixels
they read as a use (csdr_tiler.first_uses: the first use of a lazily mirrored asset queues its
copy); the pyramid's background renders read through `PyramidSceneReader`, which does not.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any
from urllib.parse import urlsplit

import attr
import numpy as np
import rasterio
import rio_tiler.io.base
import rio_tiler.utils
from cachetools import LRUCache
from morecantile import Tile, TileMatrixSet
from rasterio import warp
from rasterio.errors import RasterioIOError
from rio_tiler.constants import WGS84_CRS
from rio_tiler.errors import InvalidBandName, RioTilerError
from rio_tiler.io import Reader
from rio_tiler.io.base import MultiBaseReader
from rio_tiler.models import ImageData, Info, PointData
from rio_tiler.types import AssetInfo, AssetType
from rio_tiler.utils import cast_to_sequence
from titiler.pgstac.reader import PgSTACReader, SimpleSTACReader

from csdr_tiler.first_uses import USES
from csdr_tiler.libgdal import forget_remote

logger = logging.getLogger(__name__)

# Our COGs carry their overviews and masks inside: no sidecar file to look for, so GDAL need not
# list the asset directory (thousands of files) on open.
OPEN_OPTIONS = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}


def local_path(url: str) -> str | None:
    """The filesystem path of a local asset href, or None for a remote one."""
    parts = urlsplit(url)
    if parts.scheme in ("", "file") and not url.startswith("/vsi"):
        return parts.path if parts.scheme == "file" else url
    return None


# Read a tile through the dataset's own footprint when that covers at most this share of it
# and the tile's pixels are this many times coarser than the dataset's coarsest overview.
SMALL_FOOTPRINT = 0.25
COARSER_THAN_OVERVIEWS = 2.0


class FootprintReader(Reader):
    """rio-tiler's Reader, except for a tile much larger than the dataset: then only the part of
    the tile the dataset covers is warped, and placed into an empty tile.

    rio-tiler warps the whole tile extent at the dataset's resolution (a z5 tile over a 30 km
    scene: a ~20000 px wide virtual raster, 2 s a scene here, however small the scene's share
    of the tile; 100 s for the 12 km demo scene at z5: GDAL's overviews stop well above the
    tile's resolution), which is why low-zoom mosaics take seconds per scene. Only then is the
    footprint read, on the tile's own pixel grid: the same pixels, except that for a
    reprojected scene GDAL's approximate transformer (error <= 0.125 px) picks the other
    nearest neighbour for a few percent of them. Tiles the overviews serve are read as
    rio-tiler reads them.
    """

    _footprints: dict[str, tuple[float, float, float, float]]

    def check_indexes(self, indexes: Any) -> None:
        """InvalidBandName (a 400) for a band the dataset does not have: rasterio would raise
        an IndexError from deep inside the read, answered as a server error."""
        assert self.dataset is not None  # opened in __attrs_post_init__
        count = self.dataset.count
        for index in cast_to_sequence(indexes) or ():
            if not isinstance(index, int) or not 1 <= index <= count:
                raise InvalidBandName(f"no band {index}: the asset has bands 1 to {count}")

    def part(
        self,
        bbox: Any,
        dst_crs: Any = None,
        bounds_crs: Any = WGS84_CRS,
        indexes: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> ImageData:
        """rio-tiler's part (tiles and crops), for bands the dataset has."""
        self.check_indexes(indexes)
        return super().part(bbox, dst_crs, bounds_crs, indexes, *args, **kwargs)

    def read(self, indexes: Any = None, *args: Any, **kwargs: Any) -> ImageData:
        """rio-tiler's read (previews and statistics), for bands the dataset has."""
        self.check_indexes(indexes)
        return super().read(indexes, *args, **kwargs)

    def point(
        self,
        lon: float,
        lat: float,
        coord_crs: Any = WGS84_CRS,
        indexes: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> PointData:
        """rio-tiler's point value, for bands the dataset has."""
        self.check_indexes(indexes)
        return super().point(lon, lat, coord_crs, indexes, *args, **kwargs)

    def footprint(self, crs: Any) -> tuple[float, float, float, float]:
        """The dataset's bounds in `crs` (computed once per opened reader)."""
        cache = self.__dict__.setdefault("_footprints", {})
        key = str(crs)
        if key not in cache:
            cache[key] = tuple(warp.transform_bounds(self.crs, crs, *self.bounds, densify_pts=21))
        return cache[key]

    def tile(
        self,
        tile_x: int,
        tile_y: int,
        tile_z: int,
        tilesize: int | None = None,
        indexes: Any = None,
        expression: str | None = None,
        buffer: float | None = None,
        **kwargs: Any,
    ) -> ImageData:
        """rio-tiler's tile, read through the footprint when that is small (see the class)."""
        whole = (tile_x, tile_y, tile_z, tilesize, indexes, expression, buffer)
        if buffer or expression or not self.tile_exists(tile_x, tile_y, tile_z):
            return super().tile(*whole, **kwargs)
        matrix = self.tms.matrix(tile_z)
        width, height = tilesize or matrix.tileWidth, tilesize or matrix.tileHeight
        left, bottom, right, top = self.tms.xy_bounds(Tile(x=tile_x, y=tile_y, z=tile_z))
        res_x, res_y = (right - left) / width, (top - bottom) / height
        west, south, east, north = self.footprint(self.tms.rasterio_crs)
        c0, c1 = (
            max(0, math.floor((west - left) / res_x)),
            min(width, math.ceil((east - left) / res_x)),
        )
        r0, r1 = (
            max(0, math.floor((top - north) / res_y)),
            min(height, math.ceil((top - south) / res_y)),
        )
        assert self.dataset is not None and self.width  # opened in __attrs_post_init__
        coarsest = (east - west) / self.width * max(self.dataset.overviews(1) or [1])
        if (
            c1 <= c0
            or r1 <= r0
            or (c1 - c0) * (r1 - r0) > SMALL_FOOTPRINT * width * height
            or res_x < COARSER_THAN_OVERVIEWS * coarsest
        ):
            return super().tile(*whole, **kwargs)
        part = self.part(
            (left + c0 * res_x, top - r1 * res_y, left + c1 * res_x, top - r0 * res_y),
            dst_crs=self.tms.rasterio_crs,
            bounds_crs=self.tms.rasterio_crs,
            height=r1 - r0,
            width=c1 - c0,
            max_size=None,
            indexes=indexes,
            **kwargs,
        )
        data = np.zeros((part.count, height, width), dtype=part.array.dtype)
        mask = np.ones((part.count, height, width), dtype=bool)
        data[:, r0:r1, c0:c1] = part.array.data
        mask[:, r0:r1, c0:c1] = np.ma.getmaskarray(part.array)
        return ImageData(
            np.ma.MaskedArray(data, mask=mask),
            bounds=(left, bottom, right, top),
            crs=self.tms.rasterio_crs,
            band_names=part.band_names,
            band_descriptions=part.band_descriptions,
            dataset_statistics=part.dataset_statistics,
            metadata=part.metadata,
            nodata=part.nodata,
            scales=part.scales,
            offsets=part.offsets,
        )


class RemoteAssetUnavailable(RioTilerError):
    """A remote asset (a mirrored scene at its origin node, an object store) could not be read:
    its server is down or failing. Answered 503 with Retry-After (csdr_tiler.errors)."""


class ReaderPool:
    """Idle opened `FootprintReader`s by file identity, bounded; least recently used closed
    first. Readers of local files that were replaced or removed since they were opened (a
    re-ingest writes its COG under a new name and deletes the old one) are closed at the next
    sweep: kept until evicted, each would hold the deleted file's disk space and its cached
    blocks, and a node re-ingesting scenes would grow until `max_idle` stale readers."""

    def __init__(self, max_idle: int = 256, sweep_every_s: float = 5.0) -> None:
        """Keep at most `max_idle` readers open while nobody uses them; look for those of
        replaced files every `sweep_every_s` (one stat per idle file)."""
        self.max_idle = max_idle
        self.sweep_every_s = sweep_every_s
        self.immutable: tuple[str, ...] = ()
        """URL prefixes whose objects never change (kept open by URL alone)."""
        self._lock = threading.Lock()
        self._idle: OrderedDict[Hashable, list[Reader]] = OrderedDict()
        self._count = 0
        self._swept_at = time.monotonic()
        self._local_reads: threading.BoundedSemaphore | None = None

    def bound_local_reads(self, at_once: int) -> None:
        """Let at most `at_once` threads read local files through the pool at a time (0: no
        bound). A read is CPU work (GDAL decompresses and warps): more reads at once than cores
        only share the cores more slowly (thread switches, caches, GIL hand-offs). Remote reads
        wait on the network, and are not bounded."""
        self._local_reads = threading.BoundedSemaphore(at_once) if at_once > 0 else None

    def _turn(self, url: str) -> AbstractContextManager[Any]:
        """A turn among the reads of local files (see `bound_local_reads`)."""
        if self._local_reads is None or local_path(url) is None:
            return nullcontext()
        return self._local_reads

    def _key(self, url: str, tms: TileMatrixSet, options: dict[str, Any]) -> Hashable | None:
        """(path or URL, the local file's identity or None, matrix set, options)."""
        path = local_path(url)
        if path is None:
            if self.immutable and url.startswith(self.immutable):
                return (url, None, tms.id, repr(sorted(options.items())))
            return None
        try:
            st = os.stat(path)
        except OSError:
            return None  # let rasterio report the missing file
        identity = (st.st_ino, st.st_mtime_ns, st.st_size)
        return (path, identity, tms.id, repr(sorted(options.items())))

    @staticmethod
    def _replaced(key: Hashable) -> bool:
        """Whether the local file a key names is gone or is another file now."""
        assert isinstance(key, tuple)
        path, identity = key[0], key[1]
        if identity is None:
            return False  # an object of the node's bucket: never changes under its name
        try:
            st = os.stat(path)
        except OSError:
            return True
        return bool((st.st_ino, st.st_mtime_ns, st.st_size) != identity)

    def sweep(self) -> int:
        """Close the idle readers of local files replaced or removed since they were opened;
        return how many were closed."""
        with self._lock:
            keys = list(self._idle)
            self._swept_at = time.monotonic()
        replaced = [key for key in keys if self._replaced(key)]
        closed: list[Reader] = []
        with self._lock:
            for key in replaced:
                readers = self._idle.pop(key, [])
                self._count -= len(readers)
                closed += readers
        for reader in closed:
            reader.close()
        return len(closed)

    def _take(self, key: Hashable) -> Reader | None:
        with self._lock:
            readers = self._idle.get(key)
            if not readers:
                return None
            reader = readers.pop()
            self._count -= 1
            if not readers:
                del self._idle[key]
            return reader

    def _give(self, key: Hashable, reader: Reader) -> None:
        evicted: list[Reader] = []
        with self._lock:
            self._idle.setdefault(key, []).append(reader)
            self._idle.move_to_end(key)
            self._count += 1
            while self._count > self.max_idle:
                _, readers = next(iter(self._idle.items()))
                evicted.append(readers.pop(0))
                self._count -= 1
                if not readers:
                    self._idle.popitem(last=False)
        for old in evicted:
            old.close()
        if time.monotonic() - self._swept_at >= self.sweep_every_s:
            self.sweep()

    def idle(self) -> int:
        """How many readers are open and waiting to be lent."""
        with self._lock:
            return self._count

    def clear(self) -> None:
        """Close every idle reader."""
        with self._lock:
            idle = [r for readers in self._idle.values() for r in readers]
            self._idle.clear()
            self._count = 0
        for reader in idle:
            reader.close()

    @contextmanager
    def lend(self, url: str, tms: TileMatrixSet, **options: Any) -> Iterator[Reader]:
        """A reader of `url` for this thread alone until the block ends (rio-tiler's `reader`
        slot: called with the asset href, the tile matrix set and the reader options), once it
        is this thread's turn to read (`bound_local_reads`)."""
        with self._turn(url), self._lend(url, tms, **options) as reader:
            yield reader

    @contextmanager
    def _lend(self, url: str, tms: TileMatrixSet, **options: Any) -> Iterator[Reader]:
        key = self._key(url, tms, options) if self.max_idle > 0 else None
        if key is None:
            try:
                with FootprintReader(url, tms=tms, **options) as reader:
                    yield reader
            except RasterioIOError as exc:
                if local_path(url) is not None:
                    raise
                forget_remote(url)  # or GDAL answers the next read from its cache of this failure
                where = urlsplit(url).netloc or url.split("/")[0]
                raise RemoteAssetUnavailable(
                    f"the server holding this scene's imagery ({where}) cannot be read; retry later"
                ) from exc
            return
        reader = self._take(key)
        if reader is None:
            with rasterio.Env(**OPEN_OPTIONS):
                reader = FootprintReader(url, tms=tms, **options)
        try:
            yield reader
        except RioTilerError:
            self._give(key, reader)  # the request was wrong (outside bounds...), not the file
            raise
        except BaseException:
            reader.close()  # a failed read may leave the dataset in any state
            raise
        self._give(key, reader)


POOL = ReaderPool()


class CrsKey:
    """A CRS as a memo key, hashed once per CRS object: rasterio hashes a CRS by its WKT (~15 us
    each time, several times a tile through the memos below, 5 % of a tile's CPU here). The
    CRS objects asked about are few and long-lived (an open dataset's, a tile matrix set's)."""

    __slots__ = ("crs", "hash")
    _hashes: LRUCache[int, tuple[Any, int]] = LRUCache(maxsize=256)  # id -> (the CRS, its hash)
    _lock = threading.Lock()

    def __init__(self, crs: Any) -> None:
        """Wrap `crs` (TypeError if it is not hashable)."""
        self.crs = crs
        with self._lock:
            found = self._hashes.get(id(crs))
        if found is None or found[0] is not crs:  # kept with its id: the id is not reused
            found = (crs, hash(crs))
            with self._lock:
                self._hashes[id(crs)] = found
        self.hash = found[1]

    def __hash__(self) -> int:
        """The CRS's own hash, computed once per object."""
        return self.hash

    def __eq__(self, other: object) -> bool:
        """Equal CRSs (the same object: no WKT compared)."""
        return isinstance(other, CrsKey) and (self.crs is other.crs or self.crs == other.crs)


@functools.lru_cache(maxsize=4096)
def _native_grid(src: CrsKey, dst: CrsKey, width: int, height: int, *bounds: float) -> Any:
    return warp.calculate_default_transform(src.crs, dst.crs, width, height, *bounds)


@functools.lru_cache(maxsize=16384)
def _bounds_in(src: CrsKey, dst: CrsKey, *bounds: float, **kwargs: Any) -> Any:
    return warp.transform_bounds(src.crs, dst.crs, *bounds, **kwargs)


@functools.lru_cache(maxsize=256)
def _authority_of(crs: CrsKey) -> Any:
    return _CRS_AUTHORITY_INFO(crs.crs)


_CRS_AUTHORITY_INFO = rio_tiler.utils._CRS_authority_info


def _remembered_grid(
    src_crs: Any, dst_crs: Any, width: int, height: int, *bounds: float, **kwargs: Any
) -> Any:
    """`calculate_default_transform`, memoized for rio-tiler's positional calls; any call with
    keyword arguments or an unhashable argument is computed afresh."""
    if not kwargs:
        try:
            return _native_grid(CrsKey(src_crs), CrsKey(dst_crs), width, height, *bounds)
        except TypeError:
            pass
    return warp.calculate_default_transform(src_crs, dst_crs, width, height, *bounds, **kwargs)


def _remembered_bounds(src_crs: Any, dst_crs: Any, *bounds: float, **kwargs: Any) -> Any:
    """`transform_bounds`, memoized; a call with an unhashable argument is computed afresh."""
    try:
        return _bounds_in(CrsKey(src_crs), CrsKey(dst_crs), *bounds, **kwargs)
    except TypeError:
        return warp.transform_bounds(src_crs, dst_crs, *bounds, **kwargs)


def _crs_authority(crs: Any) -> Any:
    """rio-tiler's `_CRS_authority_info`, memoized."""
    return _authority_of(CrsKey(crs))


# The names of rio-tiler's modules `remember_transforms` replaces, with what replaces them
# (docs/upstream.md; a test checks each is still there and still called by a tile read).
REMEMBERED: tuple[tuple[Any, str, Any], ...] = (
    (rio_tiler.utils, "calculate_default_transform", _remembered_grid),
    (rio_tiler.io.base, "calculate_default_transform", _remembered_grid),
    (rio_tiler.io.base, "transform_bounds", _remembered_bounds),
    (rio_tiler.utils, "_CRS_authority_info", _crs_authority),
)


def remember_transforms() -> None:
    """Install memoized coordinate work in rio-tiler's tile reading, which offers no hook for
    it: the native grid (`rio_tiler.utils`, and `rio_tiler.io.base` where an item reader
    derives its zooms: both per request), a tile's bounds in the dataset's CRS
    (`tile_exists`, asked three times per tile: the item, the asset, rio-tiler's own read;
    0.4 ms each here) and the tile CRS's authority (titiler's Content-Crs header). Called from
    the tiler's lifespan; installing again changes nothing. RuntimeError when rio-tiler no
    longer has a name it replaces (an upgrade moved it: see docs/upstream.md)."""
    for module, name, _ in REMEMBERED:
        if not callable(getattr(module, name, None)):
            raise RuntimeError(
                f"rio-tiler {rio_tiler.__version__} has no {module.__name__}.{name}: "
                "csdr_tiler.datasets.remember_transforms must follow it (docs/upstream.md)"
            )
    for module, name, ours in REMEMBERED:
        setattr(module, name, ours)


class OneAssetInThisThread(MultiBaseReader):
    """Read a single asset in the calling thread: rio-tiler would start a thread pool for it."""

    def tile(
        self,
        tile_x: int,
        tile_y: int,
        tile_z: int,
        assets: Sequence[AssetType] | AssetType | None = None,
        expression: str | None = None,
        asset_as_band: bool = False,
        **kwargs: Any,
    ) -> ImageData:
        """rio-tiler's multi-asset tile read."""
        if len(cast_to_sequence(assets) or ()) == 1:
            kwargs.setdefault("threads", 0)
        return super().tile(
            tile_x,
            tile_y,
            tile_z,
            assets=assets,
            expression=expression,
            asset_as_band=asset_as_band,
            **kwargs,
        )


class NotesUses(MultiBaseReader):
    """Note every asset whose pixels are read as a use (csdr_storage.lazy: `info` reads headers
    only, and is none). rio-tiler resolves each asset it reads, in every read method, through
    `_get_asset_info`."""

    _headers_only: bool = False

    def info(
        self, assets: Sequence[AssetType] | AssetType | None = None, **kwargs: Any
    ) -> dict[str, Info]:
        """rio-tiler's info, which is no use of the assets."""
        self._headers_only = True
        try:
            return super().info(assets, **kwargs)
        finally:
            self._headers_only = False

    def _get_asset_info(self, asset: AssetType) -> AssetInfo:
        # A mixin: the STAC reader after it in the class's bases resolves the asset.
        info = super()._get_asset_info(asset)  # type: ignore[safe-super]
        if not self._headers_only:
            USES.note(info["url"])
        return info


# What rio-tiler's STACReader derives from the item when it is made: the assets it may read,
# the item's grid and its zoom range in the tile matrix set.
DERIVED = ("assets", "height", "width", "bounds", "transform", "crs", "minzoom", "maxzoom")
# Where an item keeps them, by tile matrix set and reader options.
DERIVED_ATTRIBUTE = "_csdr_reader_derived"


@attr.s
class ItemReader(NotesUses, OneAssetInThisThread, PgSTACReader):
    """titiler-pgstac's item reader, reading through the pool."""

    reader: Any = attr.ib(default=POOL.lend)

    def __attrs_post_init__(self) -> None:
        """titiler-pgstac's, except that what it derives from the item (asset list, projection
        extension, zooms: ~0.4 ms per tile) is computed once per item object and tile matrix
        set and kept on the item (csdr_tiler.items caches one item object per version)."""
        key = (
            self.tms.id,
            self.minzoom,
            self.maxzoom,
            *(
                frozenset(given) if given is not None else None
                for given in (
                    self.include_assets,
                    self.exclude_assets,
                    self.include_asset_types,
                    self.exclude_asset_types,
                )
            ),
        )
        kept: dict[Any, dict[str, Any]] = self.input.__dict__.setdefault(DERIVED_ATTRIBUTE, {})
        derived = kept.get(key)
        if derived is None:
            super().__attrs_post_init__()
            kept[key] = {name: getattr(self, name) for name in DERIVED}
            return
        self.item = self.input
        for name, value in derived.items():
            setattr(self, name, list(value) if name == "assets" else value)


@attr.s
class PyramidSceneReader(OneAssetInThisThread, SimpleSTACReader):
    """titiler-pgstac's reader of one scene in a mosaic, reading through the pool (the
    pyramid's background renders: no use of the scene's assets)."""

    reader: Any = attr.ib(default=POOL.lend)


@attr.s
class SceneReader(NotesUses, OneAssetInThisThread, SimpleSTACReader):
    """titiler-pgstac's reader of one scene in a mosaic a request draws, reading through the
    pool."""

    # Its own field, as every reader here: attrs' field collection (`attr.s`, not by MRO) would
    # take MultiBaseReader's `reader` (no default) through NotesUses otherwise.
    reader: Any = attr.ib(default=POOL.lend)
