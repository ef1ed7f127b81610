"""Mosaics (collections and registered searches) filtered at tile time by the caller's visibility.

A registered search is shared by its hash: whoever registered it (an administrator, say), every
caller of its tiles gets only the scenes of collections they may see. The hook is titiler-pgstac's
`PGSTACBackend.get_assets`, the one place every mosaic route (tile, TileJSON bounds aside, point,
part/bbox, feature statistics, assets lists, WMTS tiles) asks pgSTAC for scenes: it runs
`pgstac.geojsonsearch(geometry, search hash, ...)`, and the search a hash names cannot be changed
per caller. So the subclass below runs a *derived* search instead: the registered one (its
filter, datetime, ids, sort order) with its collections narrowed to the caller's visible ones,
registered once (pgSTAC's `search_query`, keyed by content) and remembered per process.

Filtering the rows afterwards would be wrong, not only slower: pgSTAC's `skipcovered` and
`exitwhenfull` drop a public scene that lies under a private one, and filtering after that would
leave a hole where the public scene's pixels belong.

A mosaic reads online scenes only: an offline scene (no COG yet) on top would hide the online
ones under it, and the reader refuses it. A collection's mosaic searches with `ONLINE_FILTER`
(csdr_storage.availability, the node's one rule); a registered search (or its derived one) is
read through its online search (`online_search`): its body with `ONLINE_FILTER` added to its
own filter, registered once and remembered per process, as the derived searches are. A
search's identity (its hash, its pyramid layer's name) stays the one the caller was given.

The scenes under a geometry are asked of pgSTAC on every call (`ScenesBackend`): titiler-pgstac
keeps each answer for 5 minutes (`get_assets`' TTL cache), so a deleted or re-ingested scene kept
showing in mosaics that long. Repeated tiles are answered from the tiler's response cache
instead, under an ETag tied to the tile's generation (csdr_tiler.caching).

At low zoom, a collection's "latest, least cloudy first" mosaic and a registered search's
mosaic come from their pyramids (csdr_tiler.pyramid) rather than from thousands of scenes. A
search's pyramid is that of the search run for the caller (the registered one, or the derived
one), so it never holds a scene of a collection the caller may not see.
"""

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import attr
from cachetools import LRUCache
from geojson_pydantic.geometries import Geometry
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from rio_tiler.errors import EmptyMosaicError, NoAssetFoundError
from rio_tiler.models import ImageData
from starlette.requests import Request
from titiler.pgstac.backend import PGSTACBackend, pgstac_config
from titiler.pgstac.dependencies import BackendParams, get_collection_id
from titiler.pgstac.errors import MosaicNotFoundError
from titiler.pgstac.reader import Item

from csdr_storage.availability import ONLINE_FILTER
from csdr_tiler.context import context_of
from csdr_tiler.datasets import PyramidSceneReader
from csdr_tiler.items import Catalogue, CollectionNotFound
from csdr_tiler.pyramid import AssetsOf, Behind, Layer, Pyramid, RenderBase

# Derived searches are not mosaics of their own: titiler's and our search lists show only
# `metadata.type == "mosaic"`.
DERIVED_TYPE = "csdr-visible-subset"
ONLINE_TYPE = "csdr-online"
DERIVE_SQL = "SELECT hash FROM pgstac.search_query(%s, _metadata => %s)"

_derived: LRUCache[tuple[str, tuple[str, ...]], str] = LRUCache(maxsize=10_000)
_derived_lock = threading.Lock()
_online: LRUCache[str, str] = LRUCache(maxsize=10_000)


def allowed_collections(named: Sequence[str] | None, visible: frozenset[str]) -> list[str] | None:
    """The collections a search may read for a caller who sees `visible`: those it names that
    are visible (or every visible one when it names none); None when that is all it names."""
    if named and set(named) <= visible:
        return None
    return sorted(visible.intersection(named) if named else visible)


def derived_search(
    pool: ConnectionPool, search_id: str, search: dict[str, Any], allowed: list[str]
) -> str:
    """The hash of `search` restricted to `allowed` collections (registered on first use)."""
    key = (search_id, tuple(allowed))
    with _derived_lock:
        if (found := _derived.get(key)) is not None:
            return found
    body = {**search, "collections": allowed}
    with pool.connection() as conn:
        row = conn.execute(
            DERIVE_SQL, (Jsonb(body), Jsonb({"type": DERIVED_TYPE, "of": search_id}))
        ).fetchone()
    assert row is not None  # search_query always returns the (new or existing) row
    with _derived_lock:
        _derived[key] = str(row[0])
    return str(row[0])


def search_for(
    pool: ConnectionPool, search_id: str, search: dict[str, Any], visible: frozenset[str] | None
) -> tuple[str, list[str] | None] | None:
    """The search to run for a caller who sees `visible` (None: all) instead of registered
    search `search_id` (`search`: its body): itself or a derived one, with the collections it
    reads (None: every one); None when the caller may see none of them."""
    named = search.get("collections") or None
    if visible is None:
        return search_id, named
    allowed = allowed_collections(named, visible)
    if allowed is None:
        return search_id, named
    if not allowed:
        return None
    return derived_search(pool, search_id, search, allowed), allowed


SEARCH_BODY_SQL = "SELECT search FROM pgstac.searches WHERE hash = %s"
# A search's body never changes: its hash is made of it.
_bodies: LRUCache[str, dict[str, Any]] = LRUCache(maxsize=10_000)
_bodies_lock = threading.Lock()


def search_body(pool: ConnectionPool, search_id: str) -> dict[str, Any] | None:
    """The body of registered search `search_id` (None: no such search)."""
    with _bodies_lock:
        if (found := _bodies.get(search_id)) is not None:
            return found
    with pool.connection() as conn:
        row = conn.execute(SEARCH_BODY_SQL, (search_id,)).fetchone()
    if row is None:
        return None
    with _bodies_lock:
        _bodies[search_id] = row[0]
    return dict(row[0])


def online_search(pool: ConnectionPool, search_id: str) -> str:
    """The hash of search `search_id` narrowed to online scenes (its filter and
    `ONLINE_FILTER`): what its mosaic reads (registered on first use)."""
    with _derived_lock:
        if (found := _online.get(search_id)) is not None:
            return found
    search = search_body(pool, search_id)
    if search is None:
        raise MosaicNotFoundError(f"SearchId `{search_id}` not found")
    own = search.get("filter")
    if own == ONLINE_FILTER:  # a collection's mosaic (`latest_search_id`): online already
        found = search_id
    else:
        online = {"op": "and", "args": [own, ONLINE_FILTER]} if own else ONLINE_FILTER
        body = {**search, "filter": online, "filter-lang": "cql2-json"}
        with pool.connection() as conn:
            row = conn.execute(
                DERIVE_SQL, (Jsonb(body), Jsonb({"type": ONLINE_TYPE, "of": search_id}))
            ).fetchone()
        assert row is not None  # search_query always returns the (new or existing) row
        found = str(row[0])
    with _derived_lock:
        _online[search_id] = found
    return found


# A collection mosaic shows the latest scene on top; between scenes of the same time, the
# least cloudy (pgSTAC sort syntax, as in a STAC search's `sortby`).
LATEST_LEAST_CLOUDY = "-datetime,eo:cloud_cover"
# A deepest pyramid tile reads every scene under it: more than titiler-pgstac's default of 100
# scenes a search, and time to find them in a large archive.
PYRAMID_SEARCH = {"items_limit": 2000, "scan_limit": 200_000, "time_limit": 60}
# The refresher reads a deepest tile's scenes one after another in its own thread, and stops
# once every pixel is filled (rio-tiler's mosaic_reader with threads <= 1). With threads,
# rio-tiler starts a new thread pool for every tile: under re-ingests the refresher started
# ~5 threads a second, each building GDAL's and PROJ's per-thread state anew, and the
# tiler's heap grew with their leftovers (docs/performance.md, "Soak").
PYRAMID_THREADS = 0


def latest_search_id(pool: ConnectionPool, collection_id: str) -> str:
    """The pgSTAC search id of the collection's "latest, least cloudy first" mosaic of its
    online scenes (an offline scene on top would hide the online ones under it)."""
    # Every argument by name: upstream's cache key function takes them all.
    search_id = get_collection_id(
        pool,
        collection_id=collection_id,
        ids=None,
        bbox=None,
        datetime=None,
        query=None,
        sortby=LATEST_LEAST_CLOUDY,
        filter_expr=json.dumps(ONLINE_FILTER),
        filter_lang="cql2-json",
    )
    return str(search_id)


def pyramid_renderer(pool: ConnectionPool) -> RenderBase:
    """What renders a deepest pyramid tile: the layer's mosaic (its pgSTAC search, in its order)
    of one asset, every band, read from the scenes through the pool of open COGs."""

    def render(layer: Layer, asset: str, z: int, x: int, y: int) -> ImageData | None:
        if layer.search:
            search_id = online_search(pool, layer.name)
        else:
            search_id = latest_search_id(pool, layer.name)
        backend = ScenesBackend(search_id, pool, reader=PyramidSceneReader)
        try:
            image, _ = backend.tile(
                x, y, z, search_options=PYRAMID_SEARCH, assets=[asset], threads=PYRAMID_THREADS
            )
        except (NoAssetFoundError, EmptyMosaicError):
            return None
        return image

    return render


ALL_COLLECTIONS_SQL = "SELECT id FROM pgstac.collections ORDER BY id"


def pyramid_assets(catalogue: Catalogue) -> AssetsOf:
    """The assets a layer's pyramid holds: those its collections' presets read (every
    collection's, for a search naming none)."""

    def assets_of(layer: Layer) -> list[str]:
        collections = layer.collections
        if collections is None:
            with catalogue.pool.connection() as conn:
                collections = tuple(str(r[0]) for r in conn.execute(ALL_COLLECTIONS_SQL))
        assets: set[str] = set()
        for collection in collections:
            try:
                assets.update(p.asset for p in catalogue.collection_presets(collection).values())
            except CollectionNotFound:
                continue
        return sorted(assets)

    return assets_of


GEOJSONSEARCH_SQL = "SELECT * FROM pgstac.geojsonsearch(%s, %s, %s, %s, %s, %s, %s, %s)"
# What a mosaic needs of each scene (titiler-pgstac's default `fields`).
SCENE_FIELDS = {"include": ["assets", "id", "bbox", "collection"]}


def search_scenes(
    pool: ConnectionPool,
    search_id: str,
    geom: Geometry,
    fields: dict[str, Any] | None = None,
    scan_limit: int | None = None,
    items_limit: int | None = None,
    time_limit: int | None = None,
    exitwhenfull: bool | None = None,
    skipcovered: bool | None = None,
) -> list[Item]:
    """pgSTAC's scenes of a registered search under `geom`, in its order (titiler-pgstac's
    defaults for every limit left out)."""
    with pool.connection() as conn:
        try:
            row = conn.execute(
                GEOJSONSEARCH_SQL,
                (
                    geom.model_dump_json(exclude_none=True),
                    search_id,
                    json.dumps(fields or SCENE_FIELDS),
                    scan_limit or pgstac_config.scan_limit,
                    items_limit or pgstac_config.items_limit,
                    f"{time_limit or pgstac_config.time_limit} seconds",
                    pgstac_config.exitwhenfull if exitwhenfull is None else exitwhenfull,
                    pgstac_config.skipcovered if skipcovered is None else skipcovered,
                ),
            ).fetchone()
        except (pg_errors.RaiseException, pg_errors.NotNullViolation) as exc:
            raise MosaicNotFoundError(f"SearchId `{search_id}` not found") from exc
    return [cast(Item, feature) for feature in (row[0] if row else {}).get("features", [])]


@attr.s
class ScenesBackend(PGSTACBackend):
    """PGSTACBackend asking pgSTAC for the scenes of every tile (no 5-minute cache)."""

    def get_assets(self, geom: Geometry, **kwargs: Any) -> list[Item]:
        """The scenes under `geom`, in the search's order."""
        return search_scenes(self.pool, str(self.input), geom, **kwargs)


@attr.s
class VisibleBackend(ScenesBackend):
    """ScenesBackend whose scenes come only from the caller's visible collections; at low zoom,
    a collection's own mosaic and a registered search read their pyramids."""

    visible: frozenset[str] | None = attr.ib(default=None)
    """The caller's visible collections; None: all (an administrator)."""
    pyramid: Pyramid | None = attr.ib(default=None)
    """The low-zoom pyramids, for `pyramid_collection`'s mosaic or this search's."""
    pyramid_collection: str | None = attr.ib(default=None)
    """Set when this mosaic is that collection's "latest, least cloudy first" one."""
    pyramid_behind: Behind | None = attr.ib(default=None)
    """The request's note of pyramid tiles it got behind their generation."""

    def tile(  # type: ignore[override]
        self, x: int, y: int, z: int, search_options: dict[str, Any] | None = None, **kwargs: Any
    ) -> tuple[ImageData, list[str]]:
        """From the pyramid when the tile is one it holds, else from the scenes."""
        if self.pyramid is not None and (layer := self.pyramid_layer()) is not None:
            image = self.pyramid.image(layer, self.tms, x, y, z, kwargs, self.pyramid_behind)
            if image is not None:
                return image, [f"{layer.lock_name} (pyramid z{z})"]
        return super().tile(x, y, z, search_options=search_options, **kwargs)

    def pyramid_layer(self) -> Layer | None:
        """The layer this mosaic is for this caller (None: the caller sees none of it)."""
        if self.pyramid_collection is not None:
            return Layer.of_collection(self.pyramid_collection)
        found = self.caller_search()
        return Layer.of_search(*found) if found is not None else None

    def caller_search(self) -> tuple[str, list[str] | None] | None:
        """The search to run for this caller (the registered one, or a derived one) and the
        collections it reads (None: every one); None when the caller may see none of them."""
        return search_for(self.pool, str(self.input), self.info().input_search, self.visible)

    def get_assets(self, geom: Geometry, **kwargs: Any) -> list[Item]:
        """The online scenes under `geom` that the caller may see, in the search's order."""
        found = self.caller_search()
        if found is None:
            return []
        return search_scenes(self.pool, online_search(self.pool, found[0]), geom, **kwargs)


@dataclass(init=False)
class VisibleBackendParams(BackendParams):
    """titiler-pgstac's backend parameters plus the caller's visible collections (set on the
    request by csdr_tiler.access) and, on a collection's preset mosaic and on a registered
    search's mosaics, the pyramids."""

    visible: frozenset[str] | None = field(init=False)
    pyramid: Pyramid | None = field(init=False)
    pyramid_collection: str | None = field(init=False)
    pyramid_behind: Behind | None = field(init=False)

    def __init__(self, request: Request):
        """The pool, and the visibility the access middleware found (none: see nothing)."""
        super().__init__(request)
        context = context_of(request)
        self.visible = context.visible
        params = request.path_params
        # `/collections/{collection_id}/presets/{preset}/...` is the "latest, least cloudy
        # first" mosaic the pyramid holds; the raw collection route may narrow its search. A
        # registered search is the same search on every route.
        on_preset_mosaic = "collection_id" in params and "preset" in params
        on_search = "search_id" in params
        with_pyramid = on_preset_mosaic or on_search
        self.pyramid = request.app.state.csdr_pyramid if with_pyramid else None
        self.pyramid_collection = params["collection_id"] if on_preset_mosaic else None
        # Shared with the tile cache (csdr_tiler.caching), which marks an answer from tiles
        # behind, and which decided for the ETag whether a search's layer answers.
        kept = context.search_layer_kept
        self.pyramid_behind = Behind(layer_kept=kept) if with_pyramid else None
        context.pyramid_behind = self.pyramid_behind
