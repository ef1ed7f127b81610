"""Discovery settings (`CSDR_DISCOVERY_*`); the database comes from the libpq `PG*` variables."""

from pydantic_settings import SettingsConfigDict

from csdr_service.settings import ServiceSettings


class Settings(ServiceSettings):
    """What an operator may set for discovery: where the node's other services answer and who
    the node is (the originator and distributor of every record)."""

    model_config = SettingsConfigDict(env_prefix="CSDR_DISCOVERY_", extra="ignore")

    max_body_bytes: int = 1024 * 1024
    """Largest request body accepted (the service takes small ones only); 413 beyond it."""

    public_url: str = "http://127.0.0.1:8086"
    """Public base URL of this service, for the endpoints named in capabilities documents."""
    catalog_url: str = "http://127.0.0.1:8081"
    """Public base URL of this node's STAC API: the records link each collection there."""
    catalog_api_url: str = ""
    """Where discovery asks the STAC API's item search for OpenSearch granules (an internal
    address, e.g. http://catalog:8081); empty: catalog_url."""
    tiler_url: str = "http://127.0.0.1:8082"
    """Public base URL of this node's tiler, for the WMTS and XYZ links; empty: none."""
    title: str = "CSDR Node catalogue"
    abstract: str = (
        "Collections of Chinese Earth-observation imagery (Gaofen, ZY, CBERS, HJ) served by a "
        "CSDR node as STAC, map tiles and downloads."
    )
    organisation: str = "CSDR Node"
    """Originator and distributor named in every record (e.g. the node's data centre)."""
    organisation_url: str = ""
    contact_email: str = ""
    admin_email: str = "admin@localhost"
    """OAI-PMH Identify's adminEmail when contact_email is not set: set one of them."""
    country: str = "CN"
    legal_constraints: str = (
        "Shared under the CSDR memorandum of understanding for non-commercial use, following the "
        "GEOSS Data Sharing Principles."
    )
    """The records' legal constraints when a collection states no license of its own."""
    oai_repository_id: str = "csdr-node"
    """The OAI-PMH repository identifier: record identifiers are oai:<this>:<collection>."""
    oai_page_size: int = 100
    """Records per OAI-PMH response before a resumption token."""
    csw_max_records: int = 100
    """The most records one GetRecords answers, whatever maxRecords asks."""
    catalog_timeout_s: float = 30.0
    """How long a granule search may wait for the STAC API."""
    log_level: str = "INFO"
