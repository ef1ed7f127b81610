"""Catalog settings (`CSDR_CATALOG_*`); the database comes from the libpq `PG*` variables."""

from importlib.metadata import version
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import SettingsConfigDict
from stac_fastapi.pgstac.config import Settings as StacSettings

from csdr_service.settings import CommaList, ServiceSettings
from csdr_storage.store import parse_s3_url

# The STAC API extensions this node serves (stac-fastapi-pgstac's names).
SEARCH_EXTENSIONS = [
    "filter",
    "sort",
    "fields",
    "query",
    "pagination",
    "collection_search",
    "free_text",
    "conventions",
]


class Settings(ServiceSettings):
    """What an operator may set for the catalog."""

    model_config = SettingsConfigDict(
        env_prefix="CSDR_CATALOG_", extra="ignore", populate_by_name=True
    )

    title: str = "CSDR Node"
    description: str = (
        "STAC API of a CSDR node: Chinese high-resolution Earth-observation imagery (Gaofen, ZY, "
        "CBERS, HJ) as Cloud-Optimized GeoTIFFs, searchable by place, time, cloud cover and "
        "sensor, with map tiles for every scene."
    )
    landing_id: str = "csdr-node"
    transactions: bool = False
    """Serve the STAC Transactions extension (POST/PUT/DELETE of items and collections)."""
    mmap_threshold_bytes: int = 65536
    """Blocks of this size and more mapped apart (csdr_service.allocator); 0: the environment's
    threshold. Search responses (64-256 KiB) fall below the node's 256 KiB: carved from the heap,
    the catalog grew 1.11x in the soak, 1.01x at 64 KiB (docs/performance.md, "Soak")."""
    cors_origins: CommaList = ["*"]
    cors_methods: CommaList = ["GET", "POST", "OPTIONS"]
    cors_headers: CommaList = ["Content-Type", "Authorization", "X-API-Key"]
    count_exact_below: int = 100_000
    """numberMatched is counted exactly when the planner expects fewer matches, else estimated."""
    count_stats_ttl_s: int = 60
    """How long pgSTAC may reuse a search's count."""
    collections_limit: int = 1000
    """Collections in a `/collections` page that names no `limit` (pgSTAC's default is 10):
    every collection of a node, as harvesters that read the list once and follow no `next`
    (GEO DAB's STAC accessor) need."""
    cache_max_age_s: int = 60
    """Cache-Control max-age of collection and item documents (they also carry an ETag)."""
    rate_limit_per_s: float = 50.0
    """Requests a second allowed per API key, on average (anonymous requests are not limited
    here: put a reverse proxy's limit in front for those)."""
    rate_limit_burst: int = 200
    """Requests a caller may make at once before the rate applies."""
    asset_roots: CommaList = Field(
        default_factory=lambda: [str(Path(".data/assets").resolve())],
        validation_alias=AliasChoices("CSDR_CATALOG_ASSET_ROOTS", "CSDR_INGEST_ASSETS_DIR"),
    )
    """Directories whose files are served as asset downloads (ingest's asset store by default);
    assets elsewhere keep their hrefs and are not served."""
    assets_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("CSDR_CATALOG_ASSETS_URL", "CSDR_INGEST_ASSETS_URL"),
    )
    """The node's bucket, `s3://bucket/prefix` (ingest's when it writes there): its objects are
    downloaded through presigned redirects (endpoint and credentials from the AWS_* variables)."""
    download_url_ttl_s: int = 300
    """How long a presigned download URL stays valid."""
    download_endpoint_url: str | None = None
    """The S3 endpoint as clients reach it, when not at AWS_ENDPOINT_URL (an in-cluster name):
    presigned download URLs name it."""
    tiler_url: str | None = None
    """Public URL of this node's tiler; a key given as `?api_key=` is carried into links to it."""
    peers_refresh_s: float = 30.0
    """How often the STAC APIs of peers mirrored `--assets lazy` are read again: their scenes'
    hrefs are published as this node's download route (csdr_catalog.downloads)."""
    queryables_ttl_s: float = 30.0
    """How long the list of sortable properties is reused before re-reading pgSTAC's queryables."""

    @field_validator("assets_url")
    @classmethod
    def _s3_url(cls, value: str | None) -> str | None:
        if value:
            parse_s3_url(value)
        return value or None

    def stac_settings(self) -> StacSettings:
        """The stac-fastapi-pgstac settings these options translate to."""
        return StacSettings(
            stac_fastapi_title=self.title,
            stac_fastapi_description=self.description,
            stac_fastapi_landing_id=self.landing_id,
            stac_fastapi_version=version("csdr-catalog"),
            enabled_extensions=SEARCH_EXTENSIONS,
            enable_transactions_extensions=self.transactions,
            # Items leave pgSTAC dehydrated and are merged with their collection's base item here
            # (hydraters, in Rust): pgSTAC's plpgsql hydration cost ~5 ms per item on this
            # machine kind, 50 of the ~60 ms of a 10-item page (tests/bench/bench_catalog.py).
            use_api_hydrate=True,
            cors_origins=self.cors_origins,
            cors_methods=self.cors_methods,
            cors_headers=self.cors_headers,
        )
