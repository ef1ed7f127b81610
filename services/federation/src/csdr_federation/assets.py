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
with backoff; deleted items take their copies with them. A copier renews its lease while it
copies, and records the outcome only while it holds it, so one copy runs on one copier at a time
(any number of federation processes, on any hosts), and a dead copier's is taken over once its
lease ends. Copies go to the node's asset store (csdr_storage): a local directory, or the bucket
(staged on local disk, then uploaded), so every replica of the catalog and the tiler reads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import mimetypes
import os
import shutil
import tempfile
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
from csdr_storage.store import S3_SCHEME, AssetStore, LocalStore, remove_hrefs

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
# The statements below act only while the copier holds the claim: the row is `running` with the
# attempt it claimed (a later claim, or a re-queue by a changed item, moved it on).
RENEW_SQL = """
UPDATE csdr.federation_assets SET lease_until = now() + make_interval(secs => $5)
WHERE collection = $1 AND item_id = $2 AND asset = $3 AND attempts = $4 AND status = 'running'
RETURNING lease_until
"""
# Copiers of one item's assets point it at their copies one after the other: each reads the item
# as the previous one wrote it (else the last write would undo the others').
LOCK_ITEM_SQL = "SELECT pg_advisory_xact_lock(hashtext('csdr-federation-copy'), hashtext($1))"
LOCK_TASK_SQL = """
SELECT source, checksum FROM csdr.federation_assets
WHERE collection = $1 AND item_id = $2 AND asset = $3 AND attempts = $4 AND status = 'running'
FOR UPDATE
"""
DONE_SQL = """
UPDATE csdr.federation_assets SET status = 'copied', lease_until = NULL, last_error = NULL,
    size = coalesce(size, $5), evicted_at = NULL, updated_at = now()
WHERE collection = $1 AND item_id = $2 AND asset = $3 AND attempts = $4 AND status = 'running'
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
WHERE collection = $1 AND item_id = $2 AND asset = $3 AND attempts = $7 AND status = 'running'
"""


class CopyError(Exception):
    """A copy that did not verify or could not be fetched; the message says why."""


def _segment(name: str) -> str:
    quoted = quote(name, safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


def copy_version(source: str, checksum: str | None) -> str:
    """A short name for the bytes a copy holds. A changed asset is copied under a new name, as
    ingest writes a new version: readers keep the store's files open by name (csdr_tiler)."""
    return hashlib.sha256(f"{source}\n{checksum or ''}".encode()).hexdigest()[:12]


def copy_key(peer: str, collection: str, item_id: str, key: str, kind: str, version: str) -> str:
    """Where the copy of an asset lives in the node's asset store: by peer, collection and
    item, named by its key, version and media type (GDAL and browsers like a suffix)."""
    suffix = (mimetypes.guess_extension(kind.split(";")[0].strip()) if kind else None) or ""
    parts = [_segment(part) for part in (peer, collection, item_id)]
    return "/".join([MIRRORS_DIR, *parts, f"{_segment(key)}_{version}{suffix}"])


def store_of(root: Path | AssetStore) -> AssetStore:
    """The asset store copies go to (a directory given as a path is a local store)."""
    return LocalStore(root) if isinstance(root, Path) else root


def staged(href: str) -> Path:
    """Where a copy is written before it is in place: beside it in a local store (renamed into
    place), else on this host's temporary disk (uploaded from there)."""
    if href.startswith(S3_SCHEME):
        return Path(f"{_staging(href)}.part")
    return Path(f"{href}.part")


def _staging(href: str) -> Path:
    return Path(tempfile.gettempdir(), "csdr-federation", href[len(S3_SCHEME) :])


def _present(href: str) -> bool:
    # An object of the bucket is removed only with its row: the row's word is taken for it.
    return href.startswith(S3_SCHEME) or Path(href).is_file()


async def plan_item(
    conn: asyncpg.Connection,
    peer: str,
    root: Path | AssetStore,
    origin_catalog: str,
    item: dict[str, Any],
    origin_node: str,
    lazy: bool = False,
) -> list[str]:
    """In the applying transaction: queue copies of the item's assets the origin serves (`lazy`:
    mark them wanted, for their first use to queue), point those already copied (same checksum)
    at their copy, and forget copies of assets the item no longer has or that changed. Returns
    the files to remove once the transaction has committed."""
    collection, item_id = item["collection"], item["id"]
    store = store_of(root)
    held = {r["asset"]: r for r in await conn.fetch(QUEUED_SQL, collection, item_id)}
    copyable = []
    replaced = []
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
            and _present(row["path"])
        ):
            point_at_copy(item, key, row["path"], origin_node)
            continue
        version = copy_version(asset["href"], checksum)
        path = store.href(copy_key(peer, collection, item_id, key, asset.get("type", ""), version))
        if row is not None and row["path"] != path:
            replaced.append(row["path"])  # the item reads its origin until the new copy is done
        await conn.execute(
            QUEUE_SQL,
            collection, item_id, key, peer, asset["href"], asset.get("file:size"), checksum,
            path, "wanted" if lazy else "queued",
        )  # fmt: skip
    forgotten = await conn.fetch(FORGET_SQL, collection, item_id, copyable)
    return replaced + [r["path"] for r in forgotten]


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
    """Remove copies (files or objects) and their partial files once the transaction that forgot
    them has committed."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged(path))
    remove_hrefs(paths)


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

    def keys(self) -> tuple[str, str, str, int]:
        """The row's key and the attempt claimed: what every statement of a holder names."""
        return self.collection, self.item_id, self.asset, self.attempts


async def download(client: httpx.AsyncClient, task: Task, part: Path | None = None) -> int:
    """Fetch the task's file to `part` (default: beside its place), resuming what is there with a
    byte range, and verify it; return its size. CopyError when it does not verify (the partial
    file is gone then: the next attempt starts afresh)."""
    part = part or staged(task.path)
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
    return size


async def _write(response: httpx.Response, part: Path, mode: str) -> None:
    with part.open(mode) as f:
        async for block in response.aiter_bytes(CHUNK):
            f.write(block)


def put_in_place(store: AssetStore, part: Path, href: str) -> None:
    """Move a verified copy from `part` to `href`: into the store when the href is one of its
    files, else (a row written before the node moved its assets) to the local path itself."""
    key = store.key_of(href)
    if key is None:
        os.replace(part, href)
        return
    store.put_file(part, key)
    part.unlink(missing_ok=True)  # uploaded: the staged file is not needed any more


class Copier:
    """Copies queued assets, one at a time, as a task in the federation process."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        client: httpx.AsyncClient,
        root: Path | AssetStore,
        lease_s: float = 300.0,
        attempts: int = 5,
        idle_s: float = 1.0,
        budget_bytes: int = 0,
        grace_s: float = 300.0,
    ) -> None:
        """Copy into the store `root` (a directory given as a path is a local store); hold each
        claim `lease_s`, renewed every third of it while the copy runs."""
        self.pool = pool
        self.budget_bytes = budget_bytes
        self.grace_s = grace_s
        self._kept_at = 0.0
        self.client = client
        self.store = store_of(root)
        self.lease_s = lease_s
        self.attempts = attempts
        self.idle_s = idle_s
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def start(self) -> None:
        """Remove copies no row names any more, then start the loop."""
        found = await asyncio.to_thread(copies_in, self.store)
        kept = {r[0] for r in await self.pool.fetch("SELECT path FROM csdr.federation_assets")}
        if removed := await asyncio.to_thread(remove_unnamed, self.store, found, kept):
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
        copying: asyncio.Task[int] = asyncio.create_task(
            self._copy(task), name=f"copy {task.source}"
        )
        try:
            held = await self._hold(task, copying)
        finally:
            if not copying.done():
                copying.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await copying
        if not held:
            logger.warning("federation: copy of %s lost its lease; another copier has it",
                           task.source)  # fmt: skip
            return True
        try:
            size = copying.result()
        except CopyError as exc:
            delay = min(2.0**task.attempts, 300.0)
            logger.warning("federation: copy of %s failed (attempt %d): %s", task.source,
                           task.attempts, exc)  # fmt: skip
            await self.pool.execute(
                RETRY_SQL, task.collection, task.item_id, task.asset, str(exc)[:1000],
                self.attempts, delay, task.attempts,
            )  # fmt: skip
            return True
        await self._point_item(task, size)
        return True

    async def _copy(self, task: Task) -> int:
        part = staged(task.path)
        size = await download(self.client, task, part)
        await asyncio.to_thread(put_in_place, self.store, part, task.path)
        return size

    async def _hold(self, task: Task, copying: asyncio.Task[int]) -> bool:
        """Renew the task's lease every third of it until `copying` ends; False when the lease
        was lost (another copier claimed the row, or the item changed and queued it again)."""
        while True:
            done, _ = await asyncio.wait({copying}, timeout=self.lease_s / 3)
            if done:
                return True
            try:
                kept = await self.pool.fetchval(RENEW_SQL, *task.keys(), self.lease_s)
            except Exception as exc:  # the outcome is refused if the lease ends meanwhile
                log_retry(logger, "federation: cannot renew an asset copy's lease", exc)
                continue
            if kept is None:
                return False

    async def _point_item(self, task: Task, size: int) -> None:
        """Point the item at its copy and mark the copy done, while this copier still holds it
        (a changed item re-queued it, a copier that lost its lease records nothing)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(LOCK_ITEM_SQL, f"{task.collection}/{task.item_id}")
            row = await conn.fetchrow(LOCK_TASK_SQL, *task.keys())
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
            await conn.execute(DONE_SQL, *task.keys(), size)

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


def sweep(root: Path | AssetStore, kept: set[str]) -> int:
    """Remove copies under the mirrors folder that no row names (left by a crash between a commit
    and the removal of the files it forgot), and partial files of this host none names; return
    how many went."""
    return remove_unnamed(root, copies_in(root), kept)


def copies_in(root: Path | AssetStore) -> list[str]:
    """The copies under the mirrors folder (paths or `s3://` URLs) and this host's partial files.
    Listed before the rows are read: a copy another process makes meanwhile is not a candidate."""
    store = store_of(root)
    if isinstance(store, LocalStore):
        return _files_under(store.root / MIRRORS_DIR)
    objects = [store.href(key) for key in store.keys_under(MIRRORS_DIR)]
    return objects + _files_under(_staging(store.href(MIRRORS_DIR)))


def remove_unnamed(root: Path | AssetStore, found: list[str], kept: set[str]) -> int:
    """Remove what `found` lists that no row (`kept`) names, as a copy or its partial file; return
    how many went."""
    store = store_of(root)
    unnamed = [
        name
        for name in found
        if name not in kept and name.removesuffix(".part") not in kept
        and not (name.endswith(".part") and _staged_of(name) in kept)
    ]  # fmt: skip
    remove_hrefs(unnamed)
    folder = store.root / MIRRORS_DIR if isinstance(store, LocalStore) else None
    for path in sorted(folder.rglob("*"), reverse=True) if folder and folder.is_dir() else ():
        if path.is_dir() and not any(path.iterdir()):
            shutil.rmtree(path, ignore_errors=True)
    return len(unnamed)


def _files_under(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []


def _staged_of(part: str) -> str:
    """The `s3://` URL whose copy is staged as `part` (none: not a staged file)."""
    root = str(Path(tempfile.gettempdir(), "csdr-federation")) + "/"
    return S3_SCHEME + part[len(root) :].removesuffix(".part") if part.startswith(root) else ""
