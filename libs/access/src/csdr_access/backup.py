"""`csdr-admin backup DIR` and `csdr-admin restore DIR`: a node's database and the list of the
asset files it names.

A backup is a folder: `database.dump` (pg_dump's custom format: pgSTAC, the csdr schema with keys,
policies, subscriptions and queues, PostGIS), `assets.tsv` (every local file an item names, with
its size and sha2-256 multihash, read in the same snapshot as the dump) and `backup.json` (when,
which versions, how many). The files themselves are the operator's to copy (rsync, object
storage): the manifest is how a restore knows which are missing.

A restore goes onto an empty database (new, or migrated with no collection): it recreates
pgSTAC's roles where the cluster lacks them, replays the dump in one transaction, and checks every
file of the manifest (present, same size; same checksum with `--checksums`).

pgSTAC cannot be restored as pg_restore replays it (stac-utils/pgstac#64): pg_dump empties the
search_path, and pgSTAC's generated columns call PostGIS unqualified. The replay goes through psql
with that one statement given pgSTAC's search path instead.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import psycopg

from csdr_access.admin import AdminError
from csdr_service.checksums import checksum

DUMP, MANIFEST, INFO = "database.dump", "assets.tsv", "backup.json"
FORMAT = 1
PGSTAC_ROLES = ("pgstac_admin", "pgstac_read", "pgstac_ingest")
EMPTIED_SEARCH_PATH = "SELECT pg_catalog.set_config('search_path', '', false);"
PGSTAC_SEARCH_PATH = "SELECT pg_catalog.set_config('search_path', 'pgstac, public', false);"
COLUMNS = ["collection", "item", "asset", "href", "size", "checksum"]

ASSETS_SQL = """
SELECT i.collection, i.id, a.key, a.value ->> 'href', a.value ->> 'file:size',
       a.value ->> 'file:checksum'
FROM pgstac.items i, jsonb_each(pgstac.content_hydrate(i) -> 'assets') a
WHERE jsonb_typeof(a.value) = 'object' AND a.value ->> 'href' LIKE '/%'
ORDER BY 1, 2, 3
"""
COUNTS_SQL = """
SELECT (SELECT count(*) FROM pgstac.collections), (SELECT count(*) FROM pgstac.items),
       (SELECT count(*) FROM csdr.subscriptions)
"""


class BackupError(AdminError):
    """A backup or restore that cannot proceed; the message says why."""


class IncompleteRestore(AdminError):
    """The database is restored, but files of the manifest are missing or differ."""


def tool(name: str) -> str:
    """The path of a PostgreSQL client program (PATH first, then Debian's versioned layout)."""
    found = shutil.which(name) or max(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), default="")
    if not found:
        raise BackupError(f"{name} not found: install the PostgreSQL client (postgresql-client)")
    return found


@dataclass
class Counts:
    """What a node holds, as a backup and a restore report it."""

    collections: int
    items: int
    subscriptions: int

    @classmethod
    def of(cls, conn: psycopg.Connection) -> Counts:
        """The connected node's counts."""
        row = conn.execute(COUNTS_SQL).fetchone()
        assert row is not None
        return cls(*row)


def backup(conn: psycopg.Connection, directory: Path, checksums: bool = True) -> str:
    """Write a backup of the connected database into `directory` (new or empty); return a
    summary. `checksums` computes the sha2-256 of files whose item does not carry one."""
    if directory.exists() and any(directory.iterdir()):
        raise BackupError(f"{directory} is not empty: back up into a new folder")
    directory.mkdir(parents=True, exist_ok=True)
    missing = 0
    # One snapshot for the dump and the manifest: pg_dump reads the snapshot this transaction
    # exported, while the transaction stays open.
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute("SET LOCAL search_path TO pgstac, public")  # content_hydrate needs it
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
        dump = subprocess.run(
            [tool("pg_dump"), "--format=custom", f"--snapshot={snapshot}",
             f"--file={directory / DUMP}", conn.info.dbname],
            env=_libpq_env(conn), capture_output=True, text=True, check=False,
        )  # fmt: skip
        if dump.returncode != 0:
            raise BackupError(f"pg_dump failed: {dump.stderr.strip()}")
        counts = Counts.of(conn)
        migrations = [r[0] for r in conn.execute("SELECT name FROM csdr.schema_migrations")]
        version = conn.execute("SELECT pgstac.get_version()").fetchone()[0]  # type: ignore[index]
        with (directory / MANIFEST).open("w", newline="") as f:
            out = csv.writer(f, delimiter="\t", lineterminator="\n")
            out.writerow(COLUMNS)
            files = 0
            for collection, item, key, href, size, digest in conn.execute(ASSETS_SQL):
                path = Path(href)
                if not path.is_file():
                    missing += 1
                elif size is None or (digest is None and checksums):
                    size = size or path.stat().st_size
                    digest = digest or checksum(path)
                out.writerow([collection, item, key, href, size or "", digest or ""])
                files += 1
    info = {
        "format": FORMAT,
        "created": datetime.now(UTC).isoformat(),
        "database": conn.info.dbname,
        "pgstac": version,
        "migrations": sorted(migrations),
        "collections": counts.collections,
        "items": counts.items,
        "subscriptions": counts.subscriptions,
        "assets": files,
    }
    (directory / INFO).write_text(json.dumps(info, indent=2) + "\n")
    summary = (
        f"backed up {conn.info.dbname} into {directory}: {counts.collections} collections,"
        f" {counts.items} items, {counts.subscriptions} subscriptions, {files} asset files"
        " listed in assets.tsv (copy the files themselves separately)"
    )
    if missing:
        summary += f"; {missing} of them were already missing on this node"
    return summary


@dataclass
class Check:
    """What the files of a restored node are like against the manifest."""

    present: int = 0
    missing: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)


def restore(conn: psycopg.Connection, directory: Path, checksums: bool = False) -> str:
    """Restore the backup in `directory` onto the connected database, which must hold no
    collection; return a summary. IncompleteRestore when files of the manifest are missing or
    differ (the database is restored all the same)."""
    info = _read_info(directory)
    exists = conn.execute("SELECT to_regclass('pgstac.collections')").fetchone()[0]  # type: ignore[index]
    if exists is not None:
        counts = Counts.of(conn)
        if counts.collections or counts.items:
            raise BackupError(
                f"{conn.info.dbname} is not empty ({counts.collections} collections,"
                f" {counts.items} items): restore onto a new database"
            )
    for role in PGSTAC_ROLES:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
            conn.execute(f'CREATE ROLE "{role}" NOLOGIN')
    _replay(conn, directory / DUMP, clean=exists is not None)
    counts = Counts.of(conn)
    check = check_files(directory / MANIFEST, checksums)
    summary = (
        f"restored {info['database']} (backed up {info['created']}) onto {conn.info.dbname}:"
        f" {counts.collections} collections, {counts.items} items,"
        f" {counts.subscriptions} subscriptions; {check.present} asset files as listed"
    )
    if check.missing or check.different:
        lines = [summary]
        lines += [f"missing: {href}" for href in check.missing]
        lines += [f"differs from the backup: {href}" for href in check.different]
        lines.append(
            f"{len(check.missing)} asset files missing and {len(check.different)} different:"
            " copy them back to the paths above"
        )
        raise IncompleteRestore("\n".join(lines))
    return summary


def check_files(manifest: Path, checksums: bool) -> Check:
    """Every file of a manifest: present with its size (and checksum when asked)."""
    check = Check()
    with manifest.open(newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            path = Path(row["href"])
            if not path.is_file():
                check.missing.append(row["href"])
            elif (row["size"] and path.stat().st_size != int(row["size"])) or (
                checksums and row["checksum"] and checksum(path) != row["checksum"]
            ):
                check.different.append(row["href"])
            else:
                check.present += 1
    return check


def _read_info(directory: Path) -> dict[str, Any]:
    for name in (INFO, DUMP, MANIFEST):
        if not (directory / name).is_file():
            raise BackupError(f"{directory} is not a csdr-admin backup: {name} is missing")
    info: dict[str, Any] = json.loads((directory / INFO).read_text())
    if info.get("format") != FORMAT:
        raise BackupError(f"{directory}: backup format {info.get('format')} is not {FORMAT}")
    return info


def _libpq_env(conn: psycopg.Connection) -> dict[str, str]:
    """The environment for a client program reaching the same server as `conn`."""
    params = conn.info.get_parameters()
    env = dict(os.environ)
    env.update({"PGHOST": params.get("host", ""), "PGPORT": params.get("port", "")})
    env.update({"PGUSER": params.get("user", ""), "PGDATABASE": conn.info.dbname})
    if conn.info.password:
        env["PGPASSWORD"] = conn.info.password
    return {k: v for k, v in env.items() if v != ""}


def _replay(conn: psycopg.Connection, dump: Path, clean: bool) -> None:
    """pg_restore's SQL, with pgSTAC's search path, into psql in one transaction."""
    options = ["--clean", "--if-exists"] if clean else []
    env = _libpq_env(conn)
    with tempfile.TemporaryFile("w+") as errors:
        reader = subprocess.Popen(
            [tool("pg_restore"), *options, "--file=-", str(dump)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        writer = subprocess.Popen(
            [tool("psql"), "--quiet", "--no-psqlrc", "--single-transaction",
             "--set=ON_ERROR_STOP=1", "--dbname", conn.info.dbname],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors, text=True, env=env,
        )  # fmt: skip
        assert reader.stdout is not None and reader.stderr is not None
        assert writer.stdin is not None
        reader_errors: list[str] = []
        drain = threading.Thread(target=_collect, args=(reader.stderr, reader_errors))
        drain.start()
        try:
            for line in reader.stdout:
                if line.strip() == EMPTIED_SEARCH_PATH:
                    line = PGSTAC_SEARCH_PATH + "\n"
                writer.stdin.write(line)
        except BrokenPipeError:
            pass  # psql stopped at an error: reported below
        finally:
            writer.stdin.close()
        reader.wait()
        written = writer.wait()
        drain.join()
        errors.seek(0)
        if reader.returncode != 0:
            raise BackupError(f"pg_restore failed: {''.join(reader_errors).strip()}")
        if written != 0:
            raise BackupError(f"the restore was rolled back: {errors.read().strip()[-2000:]}")


def _collect(stream: IO[str], into: list[str]) -> None:
    into.extend(stream)
