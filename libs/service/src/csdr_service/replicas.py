"""Where a service's reads go: a streaming standby of the primary when an operator names one
(`CSDR_DB_READ_HOST`, `_PORT`, and `_USER`, `_PASSWORD`, `_DBNAME` when they differ from the
primary's `PG*`), else the primary. The catalog and the tiler read through it; every write
(transactions, API key use, search registration, pyramid tiles) stays on the primary."""

from __future__ import annotations

import os

from pydantic_settings import BaseSettings, SettingsConfigDict


class ReadReplica(BaseSettings):
    """The standby that serves reads (none: reads go to the primary)."""

    model_config = SettingsConfigDict(env_prefix="CSDR_DB_READ_", extra="ignore")

    host: str | None = None
    """Host of the standby (or of a Service in front of several); unset: no replica."""
    port: int | None = None
    """Its port; default: the primary's PGPORT."""
    user: str | None = None
    password: str | None = None
    dbname: str | None = None
    connect_timeout_s: int = 3
    """How long opening a connection to it may take before the request fails (503)."""

    @property
    def configured(self) -> bool:
        """True when reads go to a standby."""
        return bool(self.host)

    def pg_env(self) -> dict[str, str]:
        """The standby as a libpq `PG*` block (what it does not set is the primary's)."""
        assert self.host is not None
        values = {
            "PGHOST": self.host,
            "PGPORT": str(self.port or os.environ.get("PGPORT", "5432")),
            "PGUSER": self.user or os.environ.get("PGUSER", ""),
            "PGPASSWORD": self.password or os.environ.get("PGPASSWORD", ""),
            "PGDATABASE": self.dbname or os.environ.get("PGDATABASE", ""),
        }
        return {k: v for k, v in values.items() if v}

    def conninfo(self) -> str:
        """The standby as a libpq connection string (psycopg)."""
        keys = {"PGHOST": "host", "PGPORT": "port", "PGUSER": "user", "PGPASSWORD": "password"}
        keys["PGDATABASE"] = "dbname"
        parts = [f"{keys[k]}={_quoted(v)}" for k, v in self.pg_env().items()]
        return " ".join([*parts, f"connect_timeout={self.connect_timeout_s}"])


def _quoted(value: str) -> str:
    """A libpq conninfo value, quoted (conninfo's own escaping of `\\` and `'`)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
