"""Tiler settings (`CSDR_TILER_*`); the database comes from the libpq `PG*` variables."""

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from csdr_service.settings import CommaList, ServiceSettings


class Settings(ServiceSettings):
    """What an operator may set for the tiler; pool sizes are titiler-pgstac's `DB_*` variables."""

    model_config = SettingsConfigDict(env_prefix="CSDR_TILER_", extra="ignore")

    title: str = "CSDR Node tiler"
    description: str = (
        "Map tiles of a CSDR node: XYZ, WMTS and TileJSON for every Gaofen, ZY, CBERS and HJ "
        "scene, for whole collections and for registered searches (mosaics)."
    )
    root_path: str = ""
    """Path prefix when served behind a proxy that strips it."""
    cors_origins: CommaList = ["*"]
    cachecontrol: str = "public, max-age=3600"
    """Cache-Control header for successful GET responses other than item answers and mosaic
    tiles (TileJSON and WMTS of mosaics, colour maps, tile matrix sets)."""
    cache_min_max_age_s: int = 60
    """Item answers and mosaic tiles: max-age is a tenth of the time since their pixels last
    changed, at least this..."""
    cache_max_max_age_s: int = 86400
    """...and at most this (also when the time of the last change is unknown)."""
    max_image_side: int = 4096
    """Largest side, in pixels, of any image made (tiles with tilesize/buffer, previews, crops,
    features, statistics); a crop or feature asked for without a size is read onto this."""
    max_image_pixels: int = 4096 * 4096
    """Most pixels of any image made."""
    max_image_bytes: int = 256 * 1024 * 1024
    """Most bytes an image may take while read (pixels x bands listed, at least 4, x 4 bytes)."""
    log_level: str = "INFO"
    items_cache_size: int = 4096
    """Item versions (and their presets) kept in memory per process."""
    collections_cache_ttl_s: float = 60.0
    """How long a collection's presets (bands, stretch of its latest items) are reused."""
    response_cache_max_bytes: int = 128 * 1024 * 1024
    """Rendered item responses (tiles, TileJSON, WMTS) kept in memory per process."""
    response_cache_max_entry_bytes: int = 2 * 1024 * 1024
    """Larger responses (big previews, crops) are rendered every time."""
    pyramid_cache_tiles: int = 128
    """Decoded low-zoom pyramid tiles kept in memory per process (256 x 256 x bands each)."""
    peer_keys_refresh_s: float = 30.0
    """How often the keys this node's peers issued it are read again (csdr_tiler.peer_keys): a
    peer added, changed or removed is read with its new key within this long."""
    pyramid_refresh_s: float = 5.0
    """How often changed pyramids are rendered ahead of requests (0: only when requested); also
    how long after a change a low-zoom tile may still show the pixels from before it (answered
    at once, with a max-age that says so, while the refresher renders the new ones)."""
    search_layers_max: int = 16
    """Registered searches (or callers' copies narrowed to what they see) with a low-zoom
    pyramid, node-wide: adopted when their low-zoom tiles are asked for (0: none; the others
    are read from the scenes)."""
    search_layer_evict_after_s: float = 3600.0
    """When all are taken, a new search replaces the least recently used only if unused this
    long (so that requests over many searches cannot keep the refresher rebuilding)."""
    search_layer_idle_s: float = 7 * 86400.0
    """Search layers unused this long are dropped."""
    assets_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("CSDR_TILER_ASSETS_URL", "CSDR_INGEST_ASSETS_URL"),
    )
    """The node's bucket, `s3://bucket/prefix` (ingest's): its objects never change under one
    name, so they are kept open like local files (`open_datasets`). GDAL reaches it through
    `/vsis3/` with the AWS_* variables (docs/storage.md)."""
    cache_stale_while_revalidate_s: int = 3600
    """Public tiles: how long a CDN may serve one past its max-age while it revalidates
    (Cache-Control stale-while-revalidate, RFC 5861)."""
    local_reads_max: int = 0
    """Reads of local COGs at once per process (0: the CPU count plus one); more wait their
    turn: beyond the cores they only share them more slowly (docs/performance.md, "Tiler: the
    item tile path"). Reads of remote assets wait on the network and are not bounded."""
    open_datasets: int = 256
    """Opened COGs kept between requests per process (0: open every asset for every read)."""
    gdal_cache_mb: int = 256
    """GDAL's raster block cache per process (GDAL_CACHEMAX). GDAL's default, 5 % of the RAM,
    lets the blocks of every COG a re-ingest replaced accumulate up to 1.2 GB on a 24 GB
    machine (tests/bench/bench_soak.py); a tile's blocks are read once and then served from
    the response cache, so a smaller bound costs little."""
    rate_limit_per_s: float = 50.0
    """Requests a second allowed per API key, on average (anonymous requests are not limited
    here: put a reverse proxy's limit in front for those)."""
    rate_limit_burst: int = 400
    """Requests a caller may make at once before the rate applies (a QGIS map redraw asks for
    dozens of tiles at once)."""
