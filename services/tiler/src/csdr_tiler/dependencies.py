"""FastAPI dependencies the tiler adds to titiler's factories: versioned items and presets.

The preset dependencies fill the slots titiler's factories already expose (`layer_dependency`,
`render_dependency`, `colormap_dependency`, `process_dependency`, `tile_dependency`), so a preset
route is titiler's own tile, TileJSON,
point, preview, crop and statistics endpoint with the band choice and stretch taken from the
preset named in the path instead of the query.
"""

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import anyio.to_thread
import pystac
from fastapi import Depends, HTTPException, Path, Request
from morecantile import TileMatrixSet
from rio_tiler.colormap import cmap
from rio_tiler.types import AssetType, ColorMapType
from titiler.core.algorithm.base import BaseAlgorithm
from titiler.core.dependencies import (
    AssetsExprParams,
    ColorMapParams,
    DatasetParams,
    DefaultDependency,
    ImageRenderingParams,
    TileParams,
)
from titiler.mosaic.factory import PixelSelectionParams
from titiler.pgstac.dependencies import PgSTACParams

from csdr_render.presets import Preset
from csdr_tiler.context import context_of
from csdr_tiler.db import primary_pool
from csdr_tiler.elevation import algorithms
from csdr_tiler.items import Catalogue
from csdr_tiler.mosaics import latest_search_id
from csdr_tiler.tms import TILE_MATRIX_SETS

T = TypeVar("T")


def on_event_loop(dependency: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """`dependency` (a function or class that only parses its parameters: no I/O) as a coroutine
    with the same parameters, which FastAPI awaits on the event loop. FastAPI runs a plain
    function or class in a worker thread: titiler's tile route has eight such dependencies,
    each two thread switches and a wake-up of the event loop for microseconds of parsing."""

    async def on_loop(**values: Any) -> T:
        return dependency(**values)

    # FastAPI reads the parameters from the signature (annotations resolved here: the
    # dependency's module, not this one, names them).
    on_loop.__signature__ = inspect.signature(dependency, eval_str=True)  # type: ignore[attr-defined]
    on_loop.__name__ = on_loop.__qualname__ = getattr(dependency, "__name__", "dependency")
    on_loop.__doc__ = dependency.__doc__
    return on_loop


def environment() -> dict[str, Any]:
    """No GDAL options per request (titiler's default `environment_dependency`)."""
    return {}


# titiler's parameter dependencies of item routes (its factories' defaults, csdr_tiler.elevation's
# algorithms), awaited on the event loop.
ITEM_PARAMETERS: dict[str, Any] = {
    "reader_dependency": on_event_loop(DefaultDependency),
    "layer_dependency": on_event_loop(AssetsExprParams),
    "dataset_dependency": on_event_loop(DatasetParams),
    "tile_dependency": on_event_loop(TileParams),
    "process_dependency": on_event_loop(algorithms.dependency),
    "colormap_dependency": on_event_loop(ColorMapParams),
    "render_dependency": on_event_loop(ImageRenderingParams),
    "environment_dependency": on_event_loop(environment),
}
# And those of mosaics: the same, how scenes are picked per pixel, pgSTAC's search limits.
MOSAIC_PARAMETERS: dict[str, Any] = {
    **ITEM_PARAMETERS,
    "pixel_selection_dependency": on_event_loop(PixelSelectionParams),
    "assets_accessor_dependency": on_event_loop(PgSTACParams),
}


def get_catalogue(request: Request) -> Catalogue:
    """The app's item and preset cache (opened in the lifespan)."""
    catalogue: Catalogue = request.app.state.csdr_catalogue
    return catalogue


CatalogueDep = Annotated[Catalogue, Depends(on_event_loop(get_catalogue))]


def request_item_version(request: Request, collection_id: str, item_id: str) -> str:
    """The item's version, read once per request (the HTTP cache may have read it already)."""
    context = context_of(request)
    if context.item_version is None:
        context.item_version = get_catalogue(request).item_version(collection_id, item_id)
    return context.item_version.version


def item_of(request: Request, collection_id: str, item_id: str) -> pystac.Item:
    """The STAC item named in the path, at its current version (titiler-pgstac's ItemIdParams
    caches by id for minutes; this one sees a re-ingest on the next request)."""
    version = request_item_version(request, collection_id, item_id)
    return get_catalogue(request).item(collection_id, item_id, version)


async def ItemParams(
    request: Request,
    collection_id: Annotated[str, Path(description="STAC Collection Identifier")],
    item_id: Annotated[str, Path(description="STAC Item Identifier")],
) -> pystac.Item:
    """`item_of` as a dependency: from the item cache on the event loop when the access
    middleware read the version and the cache holds it (FastAPI would run a plain function in
    a worker thread), else read in a worker thread."""
    version = context_of(request).item_version
    if version is not None:
        found = get_catalogue(request).cached_item(collection_id, item_id, version.version)
        if found is not None:
            return found
    return await anyio.to_thread.run_sync(item_of, request, collection_id, item_id)


def available_presets(request: Request) -> dict[str, Preset]:
    """The presets of whatever the path names: an item, a collection or a registered search."""
    catalogue = get_catalogue(request)
    params = request.path_params
    if "item_id" in params:
        item = item_of(request, params["collection_id"], params["item_id"])
        version = request_item_version(request, params["collection_id"], params["item_id"])
        return catalogue.item_presets(item, version)
    if "collection_id" in params:
        return catalogue.collection_presets(params["collection_id"])
    return catalogue.search_presets(params["search_id"], context_of(request).visible)


def cached_presets(request: Request) -> dict[str, Preset] | None:
    """The presets of the item the path names when the caches hold them (no database access),
    else None."""
    params = request.path_params
    version = context_of(request).item_version
    if "item_id" not in params or version is None:
        return None
    return get_catalogue(request).cached_item_presets(
        params["collection_id"], params["item_id"], version.version
    )


async def PresetParam(
    request: Request,
    preset: Annotated[
        str,
        Path(description="Preset name: true-color, false-color, ndvi or pan, as the bands allow"),
    ],
) -> Preset:
    """The preset named in the path; 404 naming the available ones when it is not one of them.
    Found in the caches on the event loop, else read in a worker thread."""
    presets = cached_presets(request)
    if presets is None:
        presets = await anyio.to_thread.run_sync(available_presets, request)
    if preset not in presets:
        names = ", ".join(sorted(presets)) or "none (no band common names)"
        raise HTTPException(404, f"unknown preset '{preset}' here; available: {names}")
    return presets[preset]


PresetDep = Annotated[Preset, Depends(PresetParam)]


@dataclass(init=False)
class PresetLayerParams(DefaultDependency):
    """titiler's `assets`/`expression` for the preset."""

    assets: list[AssetType]
    expression: str | None = None

    def __init__(self, preset: PresetDep) -> None:
        """Bands by index, or the preset's band-math expression over its asset."""
        if preset.expression:
            self.assets = [preset.asset]
            self.expression = preset.expression
        else:
            self.assets = [{"name": preset.asset, "indexes": list(preset.indexes)}]
            self.expression = None


@dataclass(init=False)
class PresetRenderParams(DefaultDependency):
    """titiler's `rescale` for the preset: the stretch from the stored statistics."""

    rescale: list[tuple[float, float]] | None = None

    def __init__(self, preset: PresetDep) -> None:
        """One (min, max) per output band, or none when the item carries no statistics."""
        self.rescale = list(preset.rescale) or None


def PresetColormap(preset: PresetDep) -> ColorMapType | None:
    """The preset's colour map (NDVI), else none."""
    return cmap.get(preset.colormap_name) if preset.colormap_name else None


def PresetProcess(preset: PresetDep) -> BaseAlgorithm | None:
    """The preset's post-processing algorithm (hillshade, terrain-RGB), else none."""
    return algorithms.get(preset.algorithm)() if preset.algorithm else None


def PresetTileParams(preset: PresetDep) -> TileParams:
    """The buffer the preset's algorithm reads around each tile (none for other presets)."""
    return TileParams(buffer=float(preset.buffer) if preset.buffer else None)


def LatestCollectionParams(
    request: Request,
    collection_id: Annotated[str, Path(description="STAC Collection Identifier")],
) -> str:
    """The pgSTAC search id of the collection's "latest, least cloudy first" mosaic (registered
    on the primary: a standby takes no writes)."""
    return latest_search_id(primary_pool(request.app), collection_id)


def tile_problem(tms: TileMatrixSet, z: int, x: int, y: int) -> str | None:
    """Why tile z/x/y is not one of `tms`'s tiles (z=40, x beyond the matrix width), or None:
    morecantile would invent a level for it and the reader would render it."""
    if not tms.minzoom <= z <= tms.maxzoom:
        return f"zoom {z} is outside {tms.id}'s levels {tms.minzoom}..{tms.maxzoom}"
    matrix = tms.matrix(z)
    if not (0 <= x < matrix.matrixWidth and 0 <= y < matrix.matrixHeight):
        return (
            f"tile {z}/{x}/{y} is outside {tms.id} level {z} "
            f"({matrix.matrixWidth} x {matrix.matrixHeight} tiles)"
        )
    return None


def check_tile(request: Request) -> None:
    """400 for a tile that its tile matrix set does not have (see `tile_problem`)."""
    params = request.path_params
    tms_id = params.get("tileMatrixSetId")
    if tms_id not in TILE_MATRIX_SETS.list():
        return  # the route's own validation answers 422 for an unknown tile matrix set
    try:
        z, x, y = int(params["z"]), int(params["x"]), int(params["y"])
    except (KeyError, ValueError):
        return  # not integers: the route's own validation answers 422
    if (problem := tile_problem(TILE_MATRIX_SETS.get(tms_id), z, x, y)) is not None:
        raise HTTPException(400, problem)


async def ValidTile(request: Request) -> None:
    """`check_tile` as a route dependency; async, as it blocks on nothing: FastAPI would run a
    plain function in a worker thread."""
    check_tile(request)
