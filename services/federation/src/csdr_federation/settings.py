"""Federation settings (`CSDR_FEDERATION_*`); the database comes from the libpq `PG*` variables."""

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from csdr_service.settings import CommaList, ServiceSettings


class Settings(ServiceSettings):
    """What an operator may set for federation."""

    model_config = SettingsConfigDict(env_prefix="CSDR_FEDERATION_", extra="ignore")

    max_body_bytes: int = 1024 * 1024
    """Largest request body accepted (the service takes small ones only); 413 beyond it."""

    node_name: str = "main"
    """This node's name in the network: mirrored records carry it as `csdr:origin`."""
    public_url: str = ""
    """This federation service's URL as peers reach it: the webhook a peer's push service calls
    to wake the worker (peers added with `--push`); empty, no wake-ups (polling only)."""
    catalog_url: str = "http://127.0.0.1:8081"
    """Public base URL of this node's STAC API (items' `self`/`via` links, asset downloads)."""
    asset_roots: CommaList = Field(
        default_factory=lambda: [str(Path(".data/assets").resolve())],
        validation_alias=AliasChoices(
            "CSDR_FEDERATION_ASSET_ROOTS", "CSDR_CATALOG_ASSET_ROOTS", "CSDR_INGEST_ASSETS_DIR"
        ),
    )
    """The catalog's asset roots: the feed publishes files under them as the catalog's download
    URLs, as the STAC API does; copies of mirrored assets go under the first."""
    assets_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "CSDR_FEDERATION_ASSETS_URL", "CSDR_CATALOG_ASSETS_URL", "CSDR_INGEST_ASSETS_URL"
        ),
    )
    """The node's bucket (`s3://bucket/prefix`, docs/storage.md): the feed publishes its objects
    as the catalog's download URLs too."""
    retention_days: float = 60.0
    """How long events stay in the feed; an older cursor answers 410 (the reader reconciles)."""
    prune_interval_s: float = 3600.0
    """How often events older than the retention are removed."""
    page_max: int = 5000
    """The largest page (`limit`) a reader may ask for."""
    worker: bool = True
    """Run the sync worker that mirrors the registered peers in this process."""
    poll_interval_s: float = 30.0
    """How often a peer at its head is asked again (a wake-up call asks at once)."""
    page_size: int = 5000
    """Events per page the worker asks a peer for."""
    apply_chunk: int = 5000
    """Items written at once while a page is applied (all in the page's one transaction)."""
    reconcile_interval_s: float = 604800.0
    """How often each peer's mirror is also compared with the peer's digests, for drift its feed
    cannot show (a local edit, a restored backup); 0: only after a 410."""
    timeout_s: float = 30.0
    """How long a peer may take to answer one page."""
    backoff_max_s: float = 600.0
    """Longest wait before a failing peer is asked again (doubling from poll_interval_s / 8)."""
    asset_lease_s: float = 300.0
    """How long a copy of a mirrored asset may run before another copier may take it over."""
    lazy_budget_bytes: int = 0
    """Most bytes the copies of `--assets lazy` peers may hold: beyond it the least recently used
    go back to reading their origin (their next use copies them again); 0: no budget."""
    lazy_grace_s: float = 300.0
    """How long the file of an evicted lazy copy stays (a request that read its item just before
    may still open it); a copy used more recently than this is not evicted."""
    asset_attempts: int = 5
    """Attempts at a copy (each after a backoff doubling to 5 minutes) before it is `failed`."""
    log_level: str = "INFO"
