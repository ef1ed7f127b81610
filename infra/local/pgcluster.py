"""A private PostgreSQL cluster for local mode and for tests.

Never the system cluster: the data directory, socket and log live where the caller says, the server
listens on 127.0.0.1 only, and password authentication is required over TCP. PostgreSQL refuses to
run as root, so when we are root every server command runs as the `postgres` user.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# Tuned for the 2-core / 24 GiB machines this project targets (see docs/performance.md).
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "shared_buffers": "1GB",
    "effective_cache_size": "4GB",
    "work_mem": "32MB",
    "maintenance_work_mem": "256MB",
    "max_wal_size": "4GB",
    "max_connections": "200",
}
# A throwaway cluster trades durability for speed.
THROWAWAY_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "256MB",
}


class ClusterError(RuntimeError):
    """The cluster could not be created, started or stopped; the message says why."""


def pg_bindir() -> Path:
    """The directory holding initdb and pg_ctl (PATH first, then Debian's layout)."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    raise ClusterError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install postgresql-15"
    )


def _server_user() -> str | None:
    """The user the server runs as: `postgres` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise ClusterError(
            "running as root but there is no `postgres` user to run the server"
        ) from exc
    return "postgres"


def server_can_reach(path: Path) -> bool:
    """True when the server's user can search its way to `path` (or, while it does not exist
    yet, to its nearest existing parent): always when the server runs as ourselves."""
    user = _server_user()
    if user is None:
        return True
    existing = next(p for p in (path, *path.parents) if p.exists())
    done = subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(existing)], check=False)
    return done.returncode == 0


@dataclass
class Cluster:
    """One private cluster: a data directory, a port, and a generated superuser password."""

    data_dir: Path
    port: int
    log_file: Path
    socket_dir: Path
    throwaway: bool = False
    host: str = "127.0.0.1"
    user: str = "postgres"
    database: str = "csdr"

    @property
    def password_file(self) -> Path:
        """Where the superuser password is kept (beside, not inside, the data directory)."""
        return self.data_dir.parent / f"{self.data_dir.name}.password"

    @property
    def password(self) -> str:
        """The superuser password, created at initdb."""
        return self.password_file.read_text().strip()

    def env(self, database: str | None = None) -> dict[str, str]:
        """The libpq PG* variables every service, pypgstac and psycopg read."""
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": database or self.database,
        }

    def conninfo(self, database: str | None = None) -> str:
        """A libpq connection string for `database` (default: the node's)."""
        e = self.env(database)
        return (
            f"host={e['PGHOST']} port={e['PGPORT']} user={e['PGUSER']} "
            f"password={e['PGPASSWORD']} dbname={e['PGDATABASE']}"
        )

    def _run(self, *args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
        user = _server_user()
        cmd = [str(a) for a in args]
        if user:
            cmd = ["runuser", "-u", user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=False)

    def _own(self, path: Path) -> None:
        user = _server_user()
        path.mkdir(parents=True, exist_ok=True)
        if user:
            pw = pwd.getpwnam(user)
            os.chown(path, pw.pw_uid, pw.pw_gid)
            # The server user must be able to reach its directories through their parents.
            for parent in path.parents:
                if parent.stat().st_mode & 0o001 == 0 and parent != Path("/"):
                    raise ClusterError(
                        f"{parent} is not searchable by the postgres user; "
                        "choose a data directory it can reach (chmod o+x or another location)"
                    )

    def initialised(self) -> bool:
        """True when initdb has run here."""
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        """Run initdb once, with a random superuser password and scram auth over TCP."""
        if self.initialised():
            return
        self._own(self.data_dir)
        self.password_file.write_text(secrets.token_urlsafe(24) + "\n")
        self.password_file.chmod(0o600)
        pwfile = (
            self.data_dir.parent / f".{self.data_dir.name}.initdb-pw"
        )  # lives only while initdb runs
        pwfile.write_text(self.password)
        pwfile.chmod(0o600)
        user = _server_user()
        if user:
            pw = pwd.getpwnam(user)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        try:
            done = self._run(
                pg_bindir() / "initdb",
                "-D",
                self.data_dir,
                "-U",
                self.user,
                f"--pwfile={pwfile}",
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            raise ClusterError(f"initdb failed in {self.data_dir}:\n{done.stderr.strip()}")

    def running(self) -> bool:
        """True when the server of this data directory is up."""
        if not self.initialised():
            return False
        return self._run(pg_bindir() / "pg_ctl", "-D", self.data_dir, "status").returncode == 0

    def start(self) -> None:
        """Start the server (no-op when running) and wait until it accepts connections."""
        self.init()
        if self.running():
            return
        self._own(self.socket_dir)
        self._own(self.log_file.parent)
        settings = {
            **SERVER_SETTINGS,
            **(THROWAWAY_SETTINGS if self.throwaway else {}),
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
        }
        options = " ".join(f"-c {k}={v}" for k, v in settings.items())
        done = self._run(
            pg_bindir() / "pg_ctl",
            "-D",
            self.data_dir,
            "-l",
            self.log_file,
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        if done.returncode != 0:
            tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise ClusterError(
                f"PostgreSQL did not start on port {self.port}:\n{done.stderr}{tail}"
            )

    def stop(self) -> None:
        """Stop the server if it runs (fast shutdown: rolls back open transactions)."""
        if self.running():
            self._run(pg_bindir() / "pg_ctl", "-D", self.data_dir, "-m", "fast", "-w", "stop")

    def follow(self, primary: Cluster) -> None:
        """Make this (not yet initialised) cluster a streaming standby of `primary`: a base
        backup with its replication settings (`pg_basebackup -R`), the same superuser
        password; `start` then runs it as a hot standby that replays the primary's WAL."""
        if self.initialised():
            raise ClusterError(f"{self.data_dir} already holds a cluster")
        self._own(self.data_dir)
        self.data_dir.chmod(0o700)
        self.password_file.write_text(primary.password + "\n")
        self.password_file.chmod(0o600)
        done = self._run(
            pg_bindir() / "pg_basebackup",
            "--dbname",
            primary.conninfo("postgres"),
            "-D",
            self.data_dir,
            "-R",
            "--checkpoint=fast",
            "--wal-method=stream",
        )
        if done.returncode != 0:
            raise ClusterError(f"pg_basebackup into {self.data_dir} failed:\n{done.stderr}")

    def create_database(self, name: str, template: str | None = None) -> None:
        """Create a database unless it exists (optionally as a copy of `template`)."""
        import psycopg

        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                return
            sql = f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
            for attempt in range(50):
                try:
                    conn.execute(sql)
                    return
                except psycopg.errors.ObjectInUse:  # template briefly busy after migrations
                    if attempt == 49:
                        raise
                    time.sleep(0.1)
