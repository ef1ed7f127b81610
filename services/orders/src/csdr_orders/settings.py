"""Orders settings (`CSDR_ORDERS_*`); the database comes from the libpq `PG*` variables."""

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from csdr_access.quotas import DEFAULT_SCENES
from csdr_service.settings import CommaList, ServiceSettings


class Settings(ServiceSettings):
    """What an operator may set for orders."""

    model_config = SettingsConfigDict(env_prefix="CSDR_ORDERS_", extra="ignore")

    max_body_bytes: int = 1024 * 1024
    """Largest request body accepted (orders are small); 413 beyond it."""
    public_url: str = "http://127.0.0.1:8085"
    cors_origins: CommaList = ["*"]
    """Origins whose pages may call the API from a browser (the node's portal among them)."""
    """Public base URL of this service, for the order links and the signed download links."""
    catalog_url: str = "http://127.0.0.1:8081"
    """Public base URL of this node's STAC API, for thumbnails and item links in deliveries."""
    default_quota: int = DEFAULT_SCENES
    """Scenes per organisation, class and year when `csdr-admin quota set` gave none."""
    max_items: int = 500
    """Most scenes in one order (a larger search is refused, not cut)."""
    link_ttl_days: float = 14.0
    """How long delivery links work; `POST /orders/{id}/renew` issues new ones."""
    link_secret: str = ""
    """Key signing the delivery links (HMAC-SHA256); empty (and no link_secret_file): one made
    on first start and kept in the database (csdr.node_secrets), shared by every process."""
    link_secret_file: Path | None = None
    """A file holding that key (read at start; `make up` keeps one in the data directory)."""

    def link_key(self) -> str:
        """The key signing delivery links (empty: none configured)."""
        if self.link_secret_file is not None:
            return self.link_secret_file.read_text().strip()
        return self.link_secret

    asset_roots: CommaList = []
    """Directories whose files delivery links may serve (the ingest's assets directory)."""
    rate_limit_per_s: float = 20.0
    """Requests per second a key may make on average (429 beyond it, never 403)."""
    rate_limit_burst: int = 100
    """Requests a key may make at once before the rate applies."""
    public_summary: bool = False
    """Answer GET /stats/summary without a key: scenes ordered, released and downloaded per
    country and year, no organisation named (for a portal or GEO reporting)."""
    worker: bool = True
    """Watch this node's productions and finish the orders waiting on them in this process."""
    poll_interval_s: float = 2.0
    """How often the production watcher looks for finished productions."""
    log_level: str = "INFO"
