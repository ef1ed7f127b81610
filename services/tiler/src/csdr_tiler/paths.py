"""The tiler's URL layout in one table: where the app mounts titiler's factories, and the request
path patterns the access middleware, the tile cache and the image limits match. A new route is
added here once; tests/test_paths.py checks every route the app serves against the patterns."""

import re

# Where the app mounts titiler's factories (FastAPI path templates).
COLLECTION_PREFIX = "/collections/{collection_id}"
COLLECTION_PRESET_PREFIX = COLLECTION_PREFIX + "/presets/{preset}"
ITEM_PREFIX = COLLECTION_PREFIX + "/items/{item_id}"
ITEM_PRESET_PREFIX = ITEM_PREFIX + "/presets/{preset}"
SEARCHES_PREFIX = "/searches"
SEARCH_PREFIX = SEARCHES_PREFIX + "/{search_id}"
SEARCH_PRESET_PREFIX = SEARCH_PREFIX + "/presets/{preset}"
# titiler's tile routes under each prefix.
TILE_ROUTES = (
    "/tiles/{tileMatrixSetId}/{z}/{x}/{y}",
    "/tiles/{tileMatrixSetId}/{z}/{x}/{y}.{format}",
)
# Every route that names a tile, its images and the list of a mosaic tile's scenes (each checks
# its z/x/y against its tile matrix set before anything is read).
TILE_ADDRESSED_ROUTES = (*TILE_ROUTES, "/tiles/{tileMatrixSetId}/{z}/{x}/{y}/assets")

# Paths that say nothing about the node's imagery: no access check.
OPEN_PATHS = ("/healthz", "/readyz", "/api", "/docs")
# Responses a browser or CDN must not keep (titiler's CacheControlMiddleware `exclude_path`
# regexes): health, and the list of searches, which grows.
NO_CACHE_PATHS = {r"/healthz", r"/readyz", r"/searches/?$", r"/searches/list$"}
# The list of registered searches (upstream's route takes any other parameter as a filter).
SEARCH_LIST_PATHS = ("/searches", "/searches/", "/searches/list")
SEARCH_REGISTER_PATH = "/searches/register"
# Words after /searches/ that are routes, not search ids.
NOT_SEARCH_IDS = ("register", "list")

# Anything under one collection, and under one of its items (access).
COLLECTION_PATH = re.compile(r"^/collections/(?P<collection>[^/]+)(?:/items/(?P<item>[^/]+))?")
# Anything under one registered search (access).
SEARCH_PATH = re.compile(r"^/searches/(?P<search>[^/]+)(?P<rest>/.*)?$")
# Every answer about one item (the tile cache).
ITEM_PATH = re.compile(r"^/collections/(?P<collection>[^/]+)/items/(?P<item>[^/]+)/")
# A mosaic's WebMercatorQuad tile, of a collection or a registered search, raw or preset (the
# tile cache: these have a pyramid generation).
MOSAIC_TILE_PATH = re.compile(
    r"^/(?:collections/(?P<collection>[^/]+)|searches/(?P<search>[^/]+))"
    r"(?:/presets/(?P<preset>[^/]+))?"
    r"/tiles/WebMercatorQuad/(?P<z>\d+)/(?P<x>\d+)/(?P<y>\d+)(?:\.\w+)?$"
)
# Anything about a mosaic, a collection's or a registered search's (not one item's): read through
# pgSTAC's geometrysearch, which writes a temporary table, so on the primary (csdr_tiler.db).
MOSAIC_PATH = re.compile(r"^/(?:collections/[^/]+/(?!items/)|searches/[^/]+/)")
# Endpoints that read an area at full resolution unless a size is given, and the size in a
# path (the image limits).
CROP_PATH = re.compile(r"/(bbox/[^/]+|feature)(/\d+x\d+)?(\.\w+)?$")
FEATURE_STATISTICS_PATH = re.compile(r"/statistics$")
SIZE_IN_PATH = re.compile(r"/(\d+)x(\d+)(\.\w+)?$")
# What every tile path holds.
TILE_SEGMENT = "/tiles/"


def has_links(path: str) -> bool:
    """Whether the path answers JSON with links we build (search register, list and info)."""
    if path == SEARCH_REGISTER_PATH or path in SEARCH_LIST_PATHS:
        return True
    found = SEARCH_PATH.match(path)
    return found is not None and found["rest"] == "/info"
