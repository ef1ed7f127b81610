"""Push settings (`CSDR_PUSH_*`); the database comes from the libpq `PG*` variables."""

from pydantic_settings import SettingsConfigDict

from csdr_service.settings import CommaList, IntList, ServiceSettings


class Settings(ServiceSettings):
    """What an operator may set for push."""

    model_config = SettingsConfigDict(env_prefix="CSDR_PUSH_", extra="ignore")

    catalog_url: str = "http://127.0.0.1:8081"
    """Public base URL of this node's STAC API, for the links in events and feeds."""
    tiler_url: str = "http://127.0.0.1:8082"
    """Public base URL of this node's tiler, for the tile links in events and feeds."""
    node_ports: IntList = [8081, 8082, 8083, 8084]
    """The node's own service ports: a webhook on this machine at one of them is refused."""
    cors_origins: CommaList = ["*"]
    """Origins whose pages may call the API from a browser (the node's portal among them)."""
    allow_private_targets: bool = False
    """Accept webhooks on loopback and private networks (tests, closed networks); default off."""
    worker: bool = True
    """Run the delivery worker in this process (several processes may run one)."""
    concurrency: int = 64
    """Deliveries in flight at once per worker."""
    fan_out_batch: int = 100
    """Events matched against the subscriptions per database round trip."""
    poll_interval_s: float = 2.0
    """How often an idle worker looks for due retries and missed notifications."""
    timeout_s: float = 10.0
    """How long a receiver may take to answer one delivery."""
    lease_s: float = 60.0
    """A claimed delivery is claimed again after this long if its worker died."""
    max_attempts: int = 12
    """Attempts before a delivery becomes a dead letter."""
    backoff_base_s: float = 2.0
    """First retry delay; doubles per attempt, with jitter, up to backoff_max_s."""
    backoff_max_s: float = 900.0
    pause_after_failing_s: float = 86400.0
    """A subscription whose endpoint failed every attempt for this long is paused."""
    feed_size: int = 50
    """Entries in a subscription's Atom feed."""
    retention_days: float = 30.0
    """How long delivered and dead deliveries are kept (the dead-letter list and the Atom feed
    reach this far back); pending ones always stay."""
    prune_interval_s: float = 3600.0
    """How often deliveries past the retention are removed."""
    log_level: str = "INFO"
