"""Migrate a node's database: pgSTAC first (pypgstac, at the version pinned in constraints.txt),
then our `csdr` schema from the numbered SQL files beside this script, then the country areas
(`areas/countries.geojson`) when that file changed since they were last loaded.

Usage: python infra/db/migrate.py   (connects with the libpq PG* variables)
Safe to run concurrently and repeatedly: an advisory lock serialises runners, applied files are
recorded in csdr.schema_migrations and never run twice.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from pathlib import Path

import psycopg
import pypgstac
from pypgstac.db import PgstacDB
from pypgstac.migrate import Migrate

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
COUNTRIES = Path(__file__).parent / "areas" / "countries.geojson"
LOCK_KEY = 0x6373_6472  # "csdr": one advisory lock for all migration runners

logger = logging.getLogger("csdr.migrate")


def migrate_pgstac(conninfo: str) -> str:
    """Install or upgrade pgSTAC to pypgstac's own version; return that version."""
    # Hand pypgstac our own connection: its pool keeps a checked-out connection open after close().
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return str(Migrate(PgstacDB(connection=conn)).run_migration(toversion=pypgstac.__version__))


def migrate_csdr(conninfo: str) -> list[str]:
    """Apply our numbered SQL migrations not yet applied; return the names applied now."""
    applied_now: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            conn.execute("CREATE SCHEMA IF NOT EXISTS csdr")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS csdr.schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.execute("SELECT name FROM csdr.schema_migrations")}
            for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
                if path.name in done:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text())  # type: ignore[arg-type]
                    conn.execute(
                        "INSERT INTO csdr.schema_migrations (name) VALUES (%s)", (path.name,)
                    )
                applied_now.append(path.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return applied_now


def load_country_areas(conninfo: str, path: Path = COUNTRIES) -> bool:
    """Replace csdr.country_areas with the file's features unless it holds them already; return
    whether it loaded them."""
    text = path.read_text()
    digest = hashlib.sha256(text.encode()).hexdigest()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            loaded = conn.execute("SELECT digest FROM csdr.country_areas_source").fetchone()
            if loaded is not None and loaded[0] == digest:
                return False
            with conn.transaction():
                conn.execute("DELETE FROM csdr.country_areas")
                conn.execute(
                    "INSERT INTO csdr.country_areas (country, name, geom)"
                    " SELECT f->'properties'->>'country', f->'properties'->>'name',"
                    "  ST_Multi(ST_SetSRID(ST_GeomFromGeoJSON(f->'geometry'), 4326))"
                    " FROM jsonb_array_elements(%s::jsonb->'features') f",
                    (text,),
                )
                conn.execute(
                    "INSERT INTO csdr.country_areas_source (digest) VALUES (%s)"
                    " ON CONFLICT (singleton) DO UPDATE SET digest = excluded.digest,"
                    " loaded_at = now()",
                    (digest,),
                )
            # The areas' pieces (a trigger cut them, migration 0047) with fresh statistics.
            conn.execute("ANALYZE csdr.area_parts")
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return True


def migrate(conninfo: str = "") -> None:
    """Bring the database to the pinned pgSTAC version and our latest schema."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY + 1,))
        try:
            version = migrate_pgstac(conninfo)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY + 1,))
    applied = migrate_csdr(conninfo)
    countries = load_country_areas(conninfo)
    logger.info(
        "pgstac %s; csdr migrations applied now: %s; country areas %s",
        version,
        applied or "none",
        "loaded" if countries else "unchanged",
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        migrate()
    except psycopg.OperationalError as exc:
        sys.exit(f"migrate: cannot reach the database: {exc}")
