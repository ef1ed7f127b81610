"""The tiler application: titiler-pgstac's factories for items, collections and searches.

Run with `uvicorn csdr_tiler.app:create_app --factory`. Composed like `titiler.pgstac.main`, whose
import-time app we do not use, without its debug, asset and external-dataset endpoints.
"""

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
import jinja2
from fastapi import Depends, FastAPI
from fastapi.params import Depends as DependsFunc
from rasterio.env import set_gdal_config
from starlette.middleware.cors import CORSMiddleware
from starlette.templating import Jinja2Templates
from starlette_cramjam.middleware import CompressionMiddleware
from titiler.core.factory import (
    AlgorithmFactory,
    ColorMapFactory,
    MultiBaseTilerFactory,
    TMSFactory,
)
from titiler.core.middleware import CacheControlMiddleware
from titiler.core.routing import EndpointScope
from titiler.core.utils import update_openapi
from titiler.extensions import wmtsExtension
from titiler.mosaic.extensions.wmts import wmtsExtension as mosaicWmtsExtension
from titiler.pgstac.dependencies import SearchIdParams
from titiler.pgstac.extensions import searchInfoExtension
from titiler.pgstac.factory import (
    MosaicTilerFactory,
    add_search_register_route,
)

from csdr_access import AccessControl
from csdr_access.ratelimit import RateLimiter
from csdr_service.errors import detail_body
from csdr_service.guards import add_guards
from csdr_service.logs import configure_logging
from csdr_service.metrics import metrics_of
from csdr_service.openapi import TILER_ERROR, complete_openapi
from csdr_service.periodic import Periodic
from csdr_storage.store import gdal_options
from csdr_tiler import health, wmts
from csdr_tiler import searches as searches_list
from csdr_tiler.access import AccessMiddleware
from csdr_tiler.caching import CacheOutcomes, Freshness, TileCacheMiddleware
from csdr_tiler.datasets import POOL, ItemReader, SceneReader, remember_transforms
from csdr_tiler.db import PrimaryRequests, close_pools, open_pools
from csdr_tiler.dependencies import (
    ITEM_PARAMETERS,
    MOSAIC_PARAMETERS,
    ItemParams,
    LatestCollectionParams,
    PresetColormap,
    PresetLayerParams,
    PresetProcess,
    PresetRenderParams,
    PresetTileParams,
    ValidTile,
    on_event_loop,
)
from csdr_tiler.elevation import algorithms
from csdr_tiler.errors import add_exception_handlers
from csdr_tiler.first_uses import USES
from csdr_tiler.items import Catalogue
from csdr_tiler.libgdal import bound_block_cache, pin_data_paths
from csdr_tiler.limits import (
    BoundedCollectionIdParams,
    BoundedSearchParams,
    ImageLimitMiddleware,
    ImageLimits,
)
from csdr_tiler.metrics import TilerMetrics
from csdr_tiler.mosaics import (
    VisibleBackend,
    VisibleBackendParams,
    pyramid_assets,
    pyramid_renderer,
)
from csdr_tiler.paths import (
    COLLECTION_PREFIX,
    COLLECTION_PRESET_PREFIX,
    ITEM_PREFIX,
    ITEM_PRESET_PREFIX,
    NO_CACHE_PATHS,
    SEARCH_PREFIX,
    SEARCH_PRESET_PREFIX,
    SEARCHES_PREFIX,
    TILE_ADDRESSED_ROUTES,
)
from csdr_tiler.peer_keys import PeerKeys
from csdr_tiler.pyramid import Pyramid, Refresher, SearchLayers
from csdr_tiler.render import render_tile
from csdr_tiler.settings import Settings
from csdr_tiler.tms import PRESET_TMS, TILE_MATRIX_SETS

# Images are already compressed; compressing them again costs CPU for nothing.
IMAGE_MEDIA_TYPES = {"image/jpeg", "image/jpg", "image/png", "image/jp2", "image/webp"}

# titiler-pgstac's default session options, with our name in pg_stat_activity, and without JIT
# (every query here is a lookup, or pgSTAC's scene search for a tile; JIT compiles a statement
# whose row estimates are high, ~0.85 s for the pyramid's fold of a few tiles). Autocommit:
# every statement here is a read or a write of its own, and psycopg would otherwise wrap each
# in BEGIN ... COMMIT, three round trips instead of one per lookup.
POOL_KWARGS: dict[str, Any] = {
    "options": "-c search_path=pgstac,public -c application_name=csdr-tiler -c jit=off",
    "autocommit": True,
}

# The map viewers' pages: titiler-pgstac's map.html first, then titiler-core's templates.
TEMPLATES = Jinja2Templates(
    env=jinja2.Environment(
        autoescape=jinja2.select_autoescape(["html", "xml"]),
        loader=jinja2.ChoiceLoader(
            [
                jinja2.PackageLoader("titiler.pgstac", "templates"),
                jinja2.PackageLoader("titiler.core", "templates"),
            ]
        ),
    )
)

# Every tile route checks its z/x/y against its tile matrix set before reading anything.
VALID_TILES: list[tuple[list[EndpointScope], list[DependsFunc]]] = [
    ([{"path": route, "method": "GET"} for route in TILE_ADDRESSED_ROUTES], [Depends(ValidTile)])
]
# Every mosaic reads only the scenes the caller may see (csdr_tiler.mosaics).
# Scenes of a mosaic are read through the pool of open COGs (csdr_tiler.datasets).
# titiler's parameters parsed on the event loop.
VISIBLE_MOSAICS: dict[str, Any] = {
    "backend": VisibleBackend,
    "backend_dependency": VisibleBackendParams,
    "dataset_reader": SceneReader,
    "render_func": render_tile,
    **MOSAIC_PARAMETERS,
}
# The presets' parameters are parsed on the event loop (csdr_tiler.dependencies.on_event_loop).
PRESET_DEPENDENCIES: dict[str, Any] = {
    "layer_dependency": on_event_loop(PresetLayerParams),
    "render_dependency": on_event_loop(PresetRenderParams),
    "colormap_dependency": on_event_loop(PresetColormap),
    "process_dependency": on_event_loop(PresetProcess),
    "tile_dependency": on_event_loop(PresetTileParams),
    "supported_tms": PRESET_TMS,
    "route_dependencies": VALID_TILES,
    "templates": TEMPLATES,
}
# Items are read through the pool of open COGs; 8-bit PNG tiles encoded by csdr_tiler.render;
# titiler's parameters parsed on the event loop.
ITEM_READING: dict[str, Any] = {
    "reader": ItemReader,
    "render_func": render_tile,
    **ITEM_PARAMETERS,
}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Hold titiler-pgstac's connection pool (`app.state.dbpool`, on the read replica when one
    is configured) and the write pool (csdr_tiler.db), the item and preset cache and the
    low-zoom pyramids (with their refresher thread) for the app's lifetime."""
    settings: Settings = app.state.csdr_settings
    # rio-tiler's coordinate work memoized, and the pool of open COGs sized: process-wide, so
    # set when an app starts serving, not when one is built (docs/upstream.md).
    remember_transforms()
    POOL.max_idle = settings.open_datasets
    POOL.bound_local_reads(settings.local_reads_max or (os.cpu_count() or 1) + 1)
    bound_block_cache(settings.gdal_cache_mb)
    pin_data_paths()
    POOL.immutable = (settings.assets_url.rstrip("/") + "/",) if settings.assets_url else ()
    # `/vsis3/` on the endpoint the AWS_* variables name, for every thread (process-wide).
    for key, value in gdal_options().items():
        set_gdal_config(key, value)
    pool, primary = await open_pools(app, POOL_KWARGS)
    catalogue = Catalogue(pool, settings.items_cache_size, settings.collections_cache_ttl_s)
    app.state.csdr_catalogue = catalogue
    # A request may get a tile behind its generation only while a refresher renders it anew.
    # Pyramids write their tiles: on the primary.
    pyramid = Pyramid(
        primary,
        pyramid_renderer(primary),
        settings.pyramid_cache_tiles,
        pyramid_assets(catalogue),
        behind_s=max(settings.pyramid_refresh_s, 0.0),
        searches=SearchLayers(
            primary,
            settings.search_layers_max,
            settings.search_layer_evict_after_s,
            settings.search_layer_idle_s,
        ),
    )
    app.state.csdr_pyramid = pyramid
    refresher = Refresher(pyramid, settings.pyramid_refresh_s)
    if settings.pyramid_refresh_s > 0:
        refresher.start()
    peer_keys = PeerKeys(pool)
    # First uses of lazily mirrored assets are written: on the primary.
    USES.open(primary)

    def refresh_peers() -> int:
        return peer_keys.refresh() + USES.refresh()

    keys_refresher = Periodic(
        "tiler-peer-keys",
        settings.peer_keys_refresh_s,
        lambda: anyio.to_thread.run_sync(refresh_peers),
        report="%d peers' keys or lazy STAC APIs set or cleared",
    )
    await keys_refresher.start()
    try:
        yield
    finally:
        await keys_refresher.stop()
        USES.close()
        peer_keys.clear()
        if settings.pyramid_refresh_s > 0:
            refresher.stop()
        close_pools(app)


def add_mosaic_routes(
    app: FastAPI,
    prefix: str,
    preset_prefix: str,
    path_dependency: Any,
    preset_path_dependency: Any,
    tag: str,
) -> MosaicTilerFactory:
    """A mosaic's routes: its presets under `preset_prefix` (first: their paths would match the
    raw routes' too), then titiler's parameters, viewer, info and WMTS under `prefix`."""
    presets = MosaicTilerFactory(
        path_dependency=preset_path_dependency,
        router_prefix=preset_prefix,
        add_statistics=True,
        add_part=True,
        **{**VISIBLE_MOSAICS, **PRESET_DEPENDENCIES},
    )
    app.include_router(presets.router, prefix=preset_prefix, tags=[tag])
    mosaics = MosaicTilerFactory(
        path_dependency=path_dependency,
        router_prefix=prefix,
        **VISIBLE_MOSAICS,
        add_statistics=True,
        add_viewer=True,
        add_part=True,
        extensions=[searchInfoExtension(), mosaicWmtsExtension()],
        templates=TEMPLATES,
        route_dependencies=VALID_TILES,
        supported_tms=TILE_MATRIX_SETS,
    )
    app.include_router(mosaics.router, prefix=prefix, tags=[tag])
    return mosaics


def add_search_routes(app: FastAPI) -> None:
    """Mosaics of registered searches: `/searches/register`, `/searches/`, `/searches/{id}/...`,
    and their presets under `/searches/{id}/presets/{preset}/...`."""
    searches = add_mosaic_routes(
        app, SEARCH_PREFIX, SEARCH_PRESET_PREFIX, SearchIdParams, SearchIdParams, "STAC Search"
    )
    app.include_router(searches_list.router)  # upstream's, limited to visible searches
    # The register route answers with TileJSON links for the search's `defaults` renders when
    # these dependencies accept them.
    add_search_register_route(
        app,
        prefix=SEARCHES_PREFIX,
        search_dependency=BoundedSearchParams,
        tile_dependencies=[
            searches.layer_dependency,
            searches.dataset_dependency,
            searches.pixel_selection_dependency,
            searches.process_dependency,
            searches.render_dependency,
            searches.assets_accessor_dependency,
            searches.reader_dependency,
            searches.backend_dependency,
        ],
        tags=["STAC Search"],
    )


def add_collection_routes(app: FastAPI) -> None:
    """Mosaics of a whole collection: `/collections/{collection_id}/...` with titiler's
    parameters, and `/collections/{collection_id}/presets/{preset}/...` latest scene first."""
    add_mosaic_routes(
        app,
        COLLECTION_PREFIX,
        COLLECTION_PRESET_PREFIX,
        BoundedCollectionIdParams,
        LatestCollectionParams,
        "STAC Collection",
    )


def add_item_routes(app: FastAPI) -> None:
    """One scene: `/collections/{collection_id}/items/{item_id}/...` with titiler's parameters,
    and `/collections/{collection_id}/items/{item_id}/presets/{preset}/...`."""
    presets = MultiBaseTilerFactory(
        path_dependency=ItemParams,
        router_prefix=ITEM_PRESET_PREFIX,
        **{**ITEM_READING, **PRESET_DEPENDENCIES},
    )
    app.include_router(presets.router, prefix=ITEM_PRESET_PREFIX, tags=["STAC Item"])
    items = MultiBaseTilerFactory(
        path_dependency=ItemParams,
        router_prefix=ITEM_PREFIX,
        **ITEM_READING,
        add_viewer=True,
        extensions=[wmtsExtension()],
        templates=TEMPLATES,
        route_dependencies=VALID_TILES,
        supported_tms=TILE_MATRIX_SETS,
    )
    app.include_router(items.router, prefix=ITEM_PREFIX, tags=["STAC Item"])


def add_reference_routes(app: FastAPI) -> None:
    """What the tile parameters accept: tile matrix sets, colormaps and algorithms."""
    tms = TMSFactory(templates=TEMPLATES, supported_tms=TILE_MATRIX_SETS)
    app.include_router(tms.router, tags=["Tiling Schemes"])
    app.include_router(ColorMapFactory(templates=TEMPLATES).router, tags=["ColorMaps"])
    app.include_router(
        AlgorithmFactory(templates=TEMPLATES, supported_algorithm=algorithms).router,
        tags=["Algorithms"],
    )


def add_middleware(app: FastAPI, settings: Settings) -> None:
    """The tile response cache with per-answer Cache-Control (innermost)
    (so cached answers get the headers below), Cache-Control on other cacheable GETs, access
    control (outside both: nothing is answered, from the cache or not, before the caller is
    judged; keyed answers become private), CORS (outside it, so a 401 carries CORS headers),
    compression of non-image responses, image size limits (before any of it works), the
    request time limit, request ids."""
    outcomes = CacheOutcomes()
    app.add_middleware(
        TileCacheMiddleware,
        max_bytes=settings.response_cache_max_bytes,
        max_entry_bytes=settings.response_cache_max_entry_bytes,
        freshness=Freshness(
            settings.cache_min_max_age_s,
            settings.cache_max_max_age_s,
            settings.cache_stale_while_revalidate_s,
        ),
        outcomes=outcomes,
    )
    app.add_middleware(
        CacheControlMiddleware, cachecontrol=settings.cachecontrol, exclude_path=NO_CACHE_PATHS
    )
    app.add_middleware(
        AccessMiddleware,
        access=AccessControl(ttl_s=settings.access_ttl_s),
        limiter=RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst, "tiler"),
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Content-Type", "Authorization", "X-API-Key"],
    )
    app.add_middleware(CompressionMiddleware, exclude_mediatype=IMAGE_MEDIA_TYPES)
    app.add_middleware(
        ImageLimitMiddleware,
        limits=ImageLimits(
            settings.max_image_side, settings.max_image_pixels, settings.max_image_bytes
        ),
    )
    app.add_middleware(PrimaryRequests)
    add_guards(app, settings.request_timeout_s, settings.max_body_bytes, detail_body)
    TilerMetrics(
        metrics_of(app),
        lambda: {
            "read": getattr(app.state, "csdr_catalogue", None) and app.state.csdr_catalogue.pool,
            "write": getattr(app.state, "csdr_writepool", None),
        },
        outcomes,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the tiler; the database pool opens in the lifespan, not here."""
    settings = settings or Settings()
    # rio-tiler logs every nodata/overview decision at INFO; upstream silences it the same way.
    configure_logging(
        settings.log_level,
        # titiler.core.factory logs "opening data with reader" at INFO for every tile.
        quiet={"rio-tiler": logging.ERROR, "titiler.core.factory": logging.WARNING},
    )
    app = FastAPI(
        title=settings.title,
        description=settings.description,
        openapi_url="/api",
        docs_url="/api.html",
        root_path=settings.root_path,
        lifespan=lifespan,
    )
    app.state.csdr_settings = settings
    update_openapi(app)
    add_exception_handlers(app)
    app.include_router(wmts.router)
    add_search_routes(app)
    add_collection_routes(app)
    add_item_routes(app)
    add_reference_routes(app)
    app.include_router(health.router)
    add_middleware(app, settings)
    complete_openapi(app, TILER_ERROR, "TilerError")
    return app
