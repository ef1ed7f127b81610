"""Asset copies of mirrored items, for peers registered with `--assets copy` or `--assets lazy`.

Applying a page (csdr_federation.sync, in its one transaction) writes a row of
csdr.federation_assets (migration 0026) for each asset the origin serves through its download
route: `queued` for a `copy` peer; `wanted` for a `lazy` one, queued by the asset's first use on
this node (migration 0034, csdr_storage.lazy), or at once when it was used before and changed at
its origin. The item is stored with the origin's href until its copy is done, and an asset already
copied with the same checksum keeps its local href. The copier claims rows with a lease, downloads
through the origin's download route with the peer's key, resuming a partial file with a byte range,
verifies size and checksum (the item's `file:size` and `file:checksum`, STAC file extension),
renames the file into place and points the item's asset at it, the origin's URL kept as an
alternate (CEOS STAC best practice REC-6360). A mismatch discards the partial file and retries
with backoff; deleted items take their copies with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx

from csdr_catalog.downloads import download_url
from csdr_federation.feed import ORIGIN
from csdr_federation.mirror import point_at_copy, point_at_origin
from csdr_service.checksums import checksum
from csdr_service.errors import log_retry

logger = logging.getLogger(__name__)

MIRRORS_DIR = "mirrors"
CHUNK = 1 << 20

QUEUED_SQL = """
SELECT asset, source, checksum, path, status FROM csdr.federation_assets
WHERE collection = $1 AND item_id = $2
"""
QUEUE_SQL = """
INSERT INTO csdr.federation_assets
    (collection, item_id, asset, peer, source, size, checksum, path, status)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (collection, item_id, asset) DO UPDATE
SET peer = EXCLUDED.peer, source = EXCLUDED.source, size = EXCLUDED.size,
    checksum = EXCLUDED.checksum, path = EXCLUDED.path,
    -- A lazy asset used before (past `wanted`) is copied again as soon as it changes.
    status = CASE WHEN federation_assets.status = 'wanted' THEN EXCLUDED.status ELSE 'queued' END,
    attempts = 0,
    due_at = now(), lease_until = NULL, last_error = NULL, updated_at = now()
"""
FORGET_SQL = """
DELETE FROM csdr.federation_assets
WHERE collection = $1 AND item_id = $2 AND NOT (asset = ANY($3::text[]))
RETURNING path
"""
FORGET_ITEMS_SQL = """
DELETE FROM csdr.federation_assets a USING unnest($1::text[], $2::text[]) AS k(collection, id)
WHERE a.collection = k.collection AND a.item_id = k.id
RETURNING a.path
"""
FORGET_COLLECTION_SQL = "DELETE FROM csdr.federation_assets WHERE collection = $1 RETURNING path"
# The next due copy: queued, or running under a lease that ended (its copier died).
CLAIM_SQL = """
UPDATE csdr.federation_assets a
SET status = 'running', attempts = attempts + 1, lease_until = now() + make_interval(secs => $1),
    updated_at = now()
FROM csdr.federation_peers p
WHERE p.name = a.peer AND (a.collection, a.item_id, a.asset) = (
    SELECT collection, item_id, asset FROM csdr.federation_assets
    WHERE (status = 'queued' AND due_at <= now()) OR (status = 'running' AND lease_until < now())
    ORDER BY due_at FOR UPDATE SKIP LOCKED LIMIT 1)
RETURNING a.collection, a.item_id, a.asset, a.source, a.size, a.checksum, a.path, a.attempts,
          p.api_key
"""
LOCK_TASK_SQL = """
SELECT source, checksum FROM csdr.federation_assets
WHERE collection = $1 AND item_id = $2 AND asset = $3 FOR UPDATE
"""
DONE_SQL = """
UPDATE csdr.federation_assets SET status = 'copied', lease_until = NULL, last_error = NULL,
    size = coalesce(size, $4), evicted_at = NULL, updated_at = now()
WHERE collection = $1 AND item_id = $2 AND asset = $3
"""
# The disk budget of lazy copies (migration 0038): the bytes they hold, and the least recently
# used copy not used within the grace, locked (a copy being pointed at or evicted is skipped).
LAZY_BYTES_SQL = """
SELECT coalesce(sum(a.size), 0) FROM csdr.federation_assets a
JOIN csdr.federation_peers p ON p.name = a.peer
WHERE a.status = 'copied' AND p.assets = 'lazy'
"""
VICTIM_SQL = """
SELECT a.collection, a.item_id, a.asset, a.path FROM csdr.federation_assets a
JOIN csdr.federation_peers p ON p.name = a.peer
WHERE a.status = 'copied' AND p.assets = 'lazy'
  AND (a.used_at IS NULL OR a.used_at < now() - make_interval(secs => $1))
ORDER BY a.used_at NULLS FIRST, a.updated_at
LIMIT 1
FOR UPDATE OF a SKIP LOCKED
"""
EVICTED_SQL = """
UPDATE csdr.federation_assets SET status = 'wanted', evicted_at = now(), updated_at = now()
WHERE collection = $1 AND item_id = $2 AND asset = $3
"""
# Files of copies evicted longer than the grace ago and not queued again since.
STALE_SQL = """
SELECT collection, item_id, asset, path FROM csdr.federation_assets
WHERE evicted_at < now() - make_interval(secs => $1) AND status = 'wanted'
FOR UPDATE SKIP LOCKED
"""
REMOVED_SQL = """
UPDATE csdr.federation_assets SET evicted_at = NULL
WHERE collection = $1 AND item_id = $2 AND asset = $3
"""
# How often the budget is looked at while no copy finishes.
BUDGET_INTERVAL_S = 10.0
RETRY_SQL = """
UPDATE csdr.federation_assets
SET status = CASE WHEN attempts >= $5 THEN 'failed' ELSE 'queued' END,
    due_at = now() + make_interval(secs => $6), lease_until = NULL, last_error = $4,
    updated_at = now()
WHERE collection = $1 AND item_id = $2 AND asset = $3 AND status = 'running'
"""


class CopyError(Exception):
    """A copy that did not verify or could not be fetched; the message says why."""


def copy_path(root: Path, peer: str, collection: str, item_id: str, key: str, kind: str) -> Path:
    """Where the copy of an asset lives: under the node's asset root, by peer, collection and
    item, named by its key and media type (GDAL and browsers like a suffix)."""
    suffix = (mimetypes.guess_extension(kind.split(";")[0].strip()) if kind else None) or ""
    safe = [quote(part, safe="") for part in (peer, collection, item_id)]
    return root.joinpath(MIRRORS_DIR, *safe, f"{quote(key, safe='')}{suffix}")


async def plan_item(
    conn: asyncpg.Connection,
    peer: str,
    root: Path,
    origin_catalog: str,
    item: dict[str, Any],
    origin_node: str,
    lazy: bool = False,
) -> list[str]:
    """In the applying transaction: queue copies of the item's assets the origin serves (`lazy`:
    mark them wanted, for their first use to queue), point those already copied (same checksum)
    at their copy, and forget copies of assets the item no longer has. Returns the files to
    remove once the transaction has committed."""
    collection, item_id = item["collection"], item["id"]
    held = {r["asset"]: r for r in await conn.fetch(QUEUED_SQL, collection, item_id)}
    copyable = []
    for key, asset in (item.get("assets") or {}).items():
        if asset.get("href") != download_url(origin_catalog + "/", collection, item_id, key):
            continue
        copyable.append(key)
        checksum = asset.get("file:checksum")
        row = held.get(key)
        if (
            row is not None
            and row["status"] == "copied"
            and row["source"] == asset["href"]
            and row["checksum"] == checksum
            and Path(row["path"]).is_file()
        ):
            point_at_copy(item, key, row["path"], origin_node)
            continue
        path = copy_path(root, peer, collection, item_id, key, asset.get("type", ""))
        await conn.execute(
            QUEUE_SQL,
            collection, item_id, key, peer, asset["href"], asset.get("file:size"), checksum,
            str(path), "wanted" if lazy else "queued",
        )  # fmt: skip
    return [r["path"] for r in await conn.fetch(FORGET_SQL, collection, item_id, copyable)]


async def forget_items(conn: asyncpg.Connection, keys: list[tuple[str, str]]) -> list[str]:
    """In the applying transaction: forget the copies of deleted items; returns their files."""
    if not keys:
        return []
    rows = await conn.fetch(FORGET_ITEMS_SQL, [c for c, _ in keys], [i for _, i in keys])
    return [r["path"] for r in rows]


async def forget_collection(conn: asyncpg.Connection, collection: str) -> list[str]:
    """In the applying transaction: forget the copies of a deleted collection's items."""
    return [r["path"] for r in await conn.fetch(FORGET_COLLECTION_SQL, collection)]


def remove_files(paths: list[str]) -> None:
    """Remove copies (and partial files) once the transaction that forgot them has committed."""
    for path in paths:
        for name in (path, f"{path}.part"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)


@dataclass
class Task:
    """One claimed copy."""

    collection: str
    item_id: str
    asset: str
    source: str
    size: int | None
    checksum: str | None
    path: str
    attempts: int
    api_key: str


async def download(client: httpx.AsyncClient, task: Task) -> None:
    """Fetch the task's file to `<path>.part`, resuming what is there with a byte range, verify
    it and rename it into place. CopyError when it does not verify (the partial file is gone then:
    the next attempt starts afresh)."""
    target = Path(task.path)
    part = Path(f"{task.path}.part")
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    headers = {"X-API-Key": task.api_key}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        async with client.stream("GET", task.source, headers=headers) as response:
            if response.status_code == 416 and have:
                pass  # the partial file is already whole (or too long): verified below
            elif response.status_code == 206 and have:
                await _write(response, part, "ab")
            elif response.status_code == 200:
                await _write(response, part, "wb")
            else:
                raise CopyError(f"{task.source} answered {response.status_code}")
    except httpx.HTTPError as exc:
        raise CopyError(f"{task.source} unreachable: {exc!r}") from exc
    size = part.stat().st_size
    if task.size is not None and size != task.size:
        part.unlink()
        raise CopyError(f"{task.source}: {size} bytes copied, the item says {task.size}")
    if task.checksum is not None:
        got = await asyncio.to_thread(checksum, part)
        if got != task.checksum:
            part.unlink()
            raise CopyError(f"{task.source}: checksum {got} copied, the item says {task.checksum}")
    os.replace(part, target)


async def _write(response: httpx.Response, part: Path, mode: str) -> None:
    with part.open(mode) as f:
        async for block in response.aiter_bytes(CHUNK):
            f.write(block)


class Copier:
    """Copies queued assets, one at a time, as a task in the federation process."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        client: httpx.AsyncClient,
        root: Path,
        lease_s: float = 300.0,
        attempts: int = 5,
        idle_s: float = 1.0,
        budget_bytes: int = 0,
        grace_s: float = 300.0,
    ) -> None:
        self.pool = pool
        self.budget_bytes = budget_bytes
        self.grace_s = grace_s
        self._kept_at = 0.0
        self.client = client
        self.root = root
        self.lease_s = lease_s
        self.attempts = attempts
        self.idle_s = idle_s
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def start(self) -> None:
        """Remove copies no row names any more, then start the loop."""
        kept = {r[0] for r in await self.pool.fetch("SELECT path FROM csdr.federation_assets")}
        if removed := await asyncio.to_thread(sweep, self.root, kept):
            logger.info("federation: removed %d asset copies no mirrored item names", removed)
        self._task = asyncio.create_task(self._run(), name="federation-assets")

    async def stop(self) -> None:
        """Stop the loop; a copy in flight keeps its partial file and is resumed later."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def wake(self) -> None:
        """Look for queued copies now (a page just queued some)."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                busy = await self.copy_one()
                if busy or time.monotonic() - self._kept_at > BUDGET_INTERVAL_S:
                    await self.keep_budget()
            except Exception as exc:
                log_retry(logger, "federation: asset copies paused", exc)
                busy = False
            if not busy:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.idle_s)

    async def copy_one(self) -> bool:
        """Claim and copy one due asset; False when none is due."""
        row = await self.pool.fetchrow(CLAIM_SQL, self.lease_s)
        if row is None:
            return False
        task = Task(**dict(row))
        try:
            await download(self.client, task)
        except CopyError as exc:
            delay = min(2.0**task.attempts, 300.0)
            logger.warning("federation: copy of %s failed (attempt %d): %s", task.source,
                           task.attempts, exc)  # fmt: skip
            await self.pool.execute(
                RETRY_SQL, task.collection, task.item_id, task.asset, str(exc)[:1000],
                self.attempts, delay,
            )  # fmt: skip
            return True
        await self._point_item(task)
        return True

    async def _point_item(self, task: Task) -> None:
        """Point the item at its copy, unless the item changed meanwhile (then the copy waits
        for its new row: a changed checksum queued it again)."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(LOCK_TASK_SQL, task.collection, task.item_id, task.asset)
            if row is None or (row["source"], row["checksum"]) != (task.source, task.checksum):
                return
            item = await conn.fetchval(
                "SELECT pgstac.get_item($1, $2)", task.item_id, task.collection
            )
            asset = (item or {}).get("assets", {}).get(task.asset)
            if asset is not None and asset.get("href") == task.source:
                origin = (item.get("properties") or {}).get(ORIGIN, "origin")
                point_at_copy(item, task.asset, task.path, origin)
                await conn.execute("SELECT pgstac.upsert_item($1::jsonb)", item)
            size = await asyncio.to_thread(os.path.getsize, task.path)
            await conn.execute(DONE_SQL, task.collection, task.item_id, task.asset, size)

    async def keep_budget(self) -> int:
        """While lazy copies hold more than the budget, evict the least recently used (one
        transaction each); then remove the files of copies evicted longer than the grace ago.
        Returns the copies evicted."""
        self._kept_at = time.monotonic()
        evicted = 0
        while self.budget_bytes > 0 and await self.pool.fetchval(LAZY_BYTES_SQL) > (
            self.budget_bytes
        ):
            if not await self.evict_one():
                break  # every copy over the budget was used within the grace, or is busy
            evicted += 1
        await self.remove_evicted()
        return evicted

    async def evict_one(self) -> bool:
        """Point the least recently used lazy copy's item at its origin again and make its row
        `wanted`, in one transaction; its file stays for the grace. False when none may go."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(VICTIM_SQL, self.grace_s)
            if row is None:
                return False
            key = (row["collection"], row["item_id"], row["asset"])
            item = await conn.fetchval("SELECT pgstac.get_item($1, $2)", key[1], key[0])
            asset = (item or {}).get("assets", {}).get(key[2])
            if asset is not None and asset.get("href") == row["path"]:
                point_at_origin(item, key[2], (item.get("properties") or {}).get(ORIGIN, "origin"))
                await conn.execute("SELECT pgstac.upsert_item($1::jsonb)", item)
            await conn.execute(EVICTED_SQL, *key)
        logger.info("federation: lazy copy %s evicted (disk budget)", row["path"])
        return True

    async def remove_evicted(self) -> int:
        """Remove the files of copies evicted longer than the grace ago and not queued again
        (their rows locked meanwhile: a use queuing one again waits); returns how many."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(STALE_SQL, self.grace_s)
            if rows:
                await asyncio.to_thread(remove_files, [r["path"] for r in rows])
            for row in rows:
                await conn.execute(REMOVED_SQL, row["collection"], row["item_id"], row["asset"])
        return len(rows)


def sweep(root: Path, kept: set[str]) -> int:
    """Remove files under the mirrors folder that no row names (left by a crash between a commit
    and the removal of the files it forgot); return how many went."""
    folder = root / MIRRORS_DIR
    removed = 0
    for path in folder.rglob("*") if folder.is_dir() else ():
        name = str(path)
        if path.is_file() and name not in kept and name.removesuffix(".part") not in kept:
            path.unlink()
            removed += 1
    for path in sorted(folder.rglob("*"), reverse=True) if folder.is_dir() else ():
        if path.is_dir() and not any(path.iterdir()):
            shutil.rmtree(path, ignore_errors=True)
    return removed
