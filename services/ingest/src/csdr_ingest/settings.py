"""Ingest settings (`CSDR_INGEST_*`); the database comes from the libpq `PG*` variables."""

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import SettingsConfigDict

from csdr_service.settings import ServiceSettings
from csdr_storage.store import AssetStore, gdal_options, open_store, parse_s3_url


class Settings(ServiceSettings):
    """What an operator may set for ingest."""

    model_config = SettingsConfigDict(env_prefix="CSDR_INGEST_", extra="ignore")

    assets_dir: Path = Field(default_factory=lambda: Path(".data/assets").resolve())
    """Where COGs and thumbnails are written; their absolute paths become the asset hrefs."""
    assets_url: str | None = None
    """`s3://bucket/prefix`: COGs and thumbnails go to this bucket instead of `assets_dir`
    (endpoint and credentials from the AWS_* variables; docs/storage.md)."""
    default_collection: str = "uploads"
    """The collection an input goes to when the job names none."""
    collection_license: str = "other"
    """SPDX id (or `other`) for collections created on first ingest."""
    compression: Literal["DEFLATE", "ZSTD"] = "DEFLATE"
    blocksize: int = 512
    """Internal tile size of the COGs, in pixels."""
    workers: int = 1
    """Jobs run at once by one ingest process (each uses all cores through GDAL)."""
    gdal_cache_mb: int = 512
    """GDAL's raster block cache during an ingest (GDAL_CACHEMAX). GDAL's default, 5 % of the
    RAM, took a 12000 x 13719 x 4 scene's ingest to a 2.9 GB peak, for no speed gain over
    512 MB (tests/bench/bench_cresda.py)."""
    poll_interval_s: float = 2.0
    """How often idle workers look for jobs queued by other processes."""
    lease_s: float = 30.0
    """How long a claimed job stays a worker's without a heartbeat (renewed every third of it):
    a job of a worker that died runs again this long after its last heartbeat."""
    job_retention_days: float = 30.0
    """How long the records of jobs that ended are kept (`GET /jobs/{id}` answers 404 after);
    queued and running jobs always stay."""
    prune_interval_s: float = 3600.0
    """How often job records past their retention are removed."""
    replaced_grace_s: float = 120.0
    """How long the files of a version a re-ingest replaced stay after the publish: a tile or
    download that read the old item can still open them (csdr_ingest.replaced)."""
    max_attempts: int = 3
    """Claims of a job whose worker keeps dying before it is failed (`WorkerLost`)."""
    dem: Path | None = None
    """A DEM GDAL can read (RPC_DEM) for orthorectification; else the RPB's mean height."""
    dem_collection: str | None = None
    """A DEM collection of this catalogue (`gf7-dem`) whose items covering a scene its RPC
    orthorectification reads (csdr_ingest.terrain); before `dem`, which is the fallback."""
    work_dir: Path | None = None
    """Where archives are unpacked (default: the system's temporary directory)."""
    data_policy_url: str | None = None
    """Link to the data policy, added to the collections created for CRESDA packages."""
    producer_name: str = "China Centre for Resources Satellite Data and Application (CRESDA)"
    producer_url: str = "https://www.cresda.com"
    inbox: Path | None = Field(
        default=None, validation_alias=AliasChoices("CSDR_INGEST_INBOX", "CSDR_INBOX")
    )
    """A directory watched for scene packages (none: no watcher)."""
    archive_dir: Path | None = None
    """Where ingested packages go (default: `archive/` beside the inbox)."""
    quarantine_dir: Path | None = None
    """Where failed packages go with `<name>.error.json` (default: `quarantine/` beside it)."""
    inbox_keep: Literal["archive", "delete"] = "archive"
    """What happens to a package once published."""
    inbox_stable_s: float = 3.0
    """A package is taken once its size has not changed for this long."""
    inbox_poll_s: float = 1.0
    """How often the inbox is scanned."""
    host_name: str = "CSDR node"
    """The organisation running this node, named as the `host` provider of its collections."""

    @field_validator("assets_url")
    @classmethod
    def _s3_url(cls, value: str | None) -> str | None:
        if value:
            parse_s3_url(value)
        return value or None

    def store(self) -> AssetStore:
        """The asset store items are written to (one per process and location)."""
        return open_store(self.assets_url, self.assets_dir)

    def gdal_config(self) -> dict[str, object]:
        """GDAL configuration options for the raster work of one ingest (for rasterio.Env, which
        hands an integer GDAL_CACHEMAX to GDALSetCacheMax64: bytes, not megabytes), and for
        reading `s3://` assets (DEMs of the catalogue) through `/vsis3/`."""
        return {"GDAL_CACHEMAX": self.gdal_cache_mb * 2**20, **gdal_options()}
