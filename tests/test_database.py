import psycopg
import pypgstac

from infra.db.migrate import MIGRATIONS_DIR, migrate


def test_migrated_database_has_pinned_pgstac_and_csdr_schema(pg_env):
    with psycopg.connect() as conn:
        assert conn.execute("SELECT pgstac.get_version()").fetchone()[0] == pypgstac.__version__
        assert conn.execute("SELECT postgis_version()").fetchone()[0].startswith("3")
        names = {r[0] for r in conn.execute("SELECT name FROM csdr.schema_migrations")}
    assert names == {p.name for p in MIGRATIONS_DIR.glob("*.sql")}


def test_migrate_again_applies_nothing(pg_env):
    with psycopg.connect() as conn:
        before = conn.execute("SELECT name, applied_at FROM csdr.schema_migrations").fetchall()
    migrate()  # libpq reads the PG* variables
    with psycopg.connect() as conn:
        after = conn.execute("SELECT name, applied_at FROM csdr.schema_migrations").fetchall()
    assert before == after
