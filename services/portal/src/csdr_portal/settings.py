"""Portal settings (`CSDR_PORTAL_*`): the public URLs of the APIs the browser application calls."""

from pydantic_settings import SettingsConfigDict

from csdr_service.settings import ServiceSettings


class Settings(ServiceSettings):
    """Where the browser finds the node's public APIs (as the user's browser reaches them, not
    as this server would)."""

    model_config = SettingsConfigDict(env_prefix="CSDR_PORTAL_", extra="ignore")

    max_body_bytes: int = 64 * 1024
    """Largest request body accepted: the portal takes none beyond tiny ones; 413 beyond it."""
    catalog_url: str = "http://127.0.0.1:8081"
    """Public base URL of the node's STAC API."""
    tiler_url: str = "http://127.0.0.1:8082"
    """Public base URL of the node's tiler."""
    push_url: str = "http://127.0.0.1:8084"
    """Public base URL of the node's push service (subscriptions); empty: no subscribe controls."""
    orders_url: str = ""
    """Public base URL of the node's orders service; empty: no basket, orders or quota controls."""
    mosaic_above: int = 300
    """Above this many matches the map shows the result set's mosaics (the tiler's, one per
    collection) instead of the page's footprints, which return from zoom 9 on."""
    title: str = "CSDR Node"
    """The name the portal shows in its header and the browser's tab."""
    log_level: str = "INFO"
