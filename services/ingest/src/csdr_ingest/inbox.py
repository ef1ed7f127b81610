"""The inbox: packages dropped into a directory are ingested by themselves.

A package (archive or folder) is queued as an ingest job once its size has stopped changing;
the job runs on the service's worker pool like any other, and then the package leaves the inbox:
to the archive (or deleted) when published, to the quarantine beside `<name>.error.json` when not.
Jobs live in the database, so a restart loses nothing: a job left running by a killed process is
queued again (csdr_ingest.jobs), its half-written files are removed
(pipeline.remove_abandoned), and a package whose job finished before the crash but was not yet
moved is moved without being ingested again (its size and mtime identify it).
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from psycopg_pool import ConnectionPool

from csdr_ingest import jobs
from csdr_ingest.packages import is_archive
from csdr_ingest.settings import Settings

logger = logging.getLogger(__name__)

RASTER_SUFFIXES = (".tif", ".tiff")
PARTIAL_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload")


def archive_dir(settings: Settings) -> Path:
    """Where published packages go."""
    assert settings.inbox is not None
    return settings.archive_dir or settings.inbox.parent / "archive"


def quarantine_dir(settings: Settings) -> Path:
    """Where failed packages go."""
    assert settings.inbox is not None
    return settings.quarantine_dir or settings.inbox.parent / "quarantine"


def candidates(inbox: Path) -> list[Path]:
    """Entries of the inbox that look like inputs (hidden and partial uploads are skipped)."""
    found = []
    for entry in sorted(inbox.iterdir()) if inbox.is_dir() else []:
        name = entry.name.lower()
        if name.startswith(".") or name.endswith(PARTIAL_SUFFIXES):
            continue
        if entry.is_dir() or is_archive(entry) or name.endswith(RASTER_SUFFIXES):
            found.append(entry)
    return found


def fingerprint(path: Path) -> str:
    """Total size, file count and latest mtime: changes while a package is still arriving."""
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    stats = [p.stat() for p in files]
    size = sum(s.st_size for s in stats)
    mtime = max((s.st_mtime_ns for s in stats), default=0)
    return f"{size}:{len(stats)}:{mtime}"


def settle(settings: Settings, path: Path, error: dict[str, str] | None) -> None:
    """Move a processed package out of the inbox: archive (or delete) it, or quarantine it with
    a `<name>.error.json` saying why."""
    if not path.exists():
        return
    if error is None:
        if settings.inbox_keep == "delete":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            return
        _move(path, archive_dir(settings))
        return
    target = _move(path, quarantine_dir(settings))
    report = {
        "package": path.name,
        "quarantined_as": target.name,
        "code": error["code"],
        "reason": error["description"],
        "failed_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    target.with_name(f"{target.name}.error.json").write_text(json.dumps(report, indent=2))
    logger.warning("quarantined %s: %s", path.name, error["description"])


def settle_job(settings: Settings, job: dict[str, Any], error: dict[str, str] | None) -> None:
    """The workers' hook (`jobs.JobFinished`, wired where the app is built): settle the package
    of a job the inbox queued."""
    if job["options"].get("inbox"):
        settle(settings, Path(job["source"]), error)


def _move(path: Path, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / path.name
    if target.exists():  # the same name came before: keep both
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        target = directory / f"{stamp}_{path.name}"
    shutil.move(str(path), target)
    return target


def last_job(pool: ConnectionPool, source: str, print_: str) -> dict[str, Any] | None:
    """The latest inbox job for this file in this exact state, if any."""
    with pool.connection() as conn:
        row = conn.execute(
            "SELECT status, error FROM csdr.ingest_jobs WHERE source = %s"
            " AND options->>'fingerprint' = %s ORDER BY created_at DESC LIMIT 1",
            (source, print_),
        ).fetchone()
    return {"status": row[0], "error": row[1]} if row else None


class Watcher:
    """A thread that scans the inbox and queues each package once its size is stable."""

    def __init__(self, pool: ConnectionPool, settings: Settings, wake: Any = None) -> None:
        assert settings.inbox is not None
        self.pool, self.settings, self.inbox = pool, settings, settings.inbox.resolve()
        self.wake = wake  # called when a job was queued (Workers.notify)
        self.seen: dict[Path, tuple[str, float]] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="inbox-watcher", daemon=True)

    def start(self) -> None:
        """Create the inbox if needed and start scanning."""
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop scanning."""
        self.stopping.set()
        self.thread.join(10)

    def scan(self, now: float) -> int:
        """One pass over the inbox; return how many packages were queued."""
        queued = 0
        present = set()
        for path in candidates(self.inbox):
            present.add(path)
            try:
                print_ = fingerprint(path)
            except OSError:
                continue  # vanished or unreadable mid-scan: look again next time
            previous = self.seen.get(path)
            if previous is None or previous[0] != print_:
                self.seen[path] = (print_, now)
                continue
            if now - previous[1] < self.settings.inbox_stable_s:
                continue
            queued += self._take(path, print_)
        self.seen = {p: v for p, v in self.seen.items() if p in present}
        return queued

    def _take(self, path: Path, print_: str) -> int:
        done = last_job(self.pool, str(path), print_)
        if done is not None and done["status"] in ("succeeded", "failed"):
            # Finished before a crash, not yet moved: move it, do not ingest it again.
            settle(self.settings, path, done["error"])
            return 0
        if done is not None:
            return 0  # queued or running
        job = jobs.enqueue(self.pool, str(path), None, None, {"inbox": True, "fingerprint": print_})
        if job is None:
            return 0
        logger.info("queued %s from the inbox (job %s)", path.name, job["id"])
        if self.wake is not None:
            self.wake()
        return 1

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.scan(time.monotonic())
            except Exception:
                logger.exception("inbox scan failed; retrying")
            self.stopping.wait(self.settings.inbox_poll_s)
