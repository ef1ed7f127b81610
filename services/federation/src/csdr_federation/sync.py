"""The sync worker: pulls each active peer's change feed and applies every page in ONE transaction
with the peer's checkpoint (collections, item upserts, deletes, cursor), so a crash or `kill -9`
mid-page leaves the page unapplied and the cursor where it was: the page is read again, nothing
is repeated, nothing lost.

A peer may only change collections whose origin is that peer (or new ones, which it then owns):
changes to this node's own collections or another origin's are refused and counted. The peer is
asked again at once while it has more, then every `poll_interval_s` (a wake-up call asks at once:
a lost wake-up costs latency, never data); a failing peer is retried with exponential backoff and
jitter, its error recorded on its row. When the peer no longer keeps the events after the cursor
(410), and every `reconcile_interval_s`, the mirror is reconciled from the peer's per-month
digests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import orjson

from csdr_federation import assets, items
from csdr_federation.feed import collection_url, content_hash, month_digests
from csdr_federation.items import ROW_SQL, hydrate_rows
from csdr_federation.mirror import mirror_collection, mirror_item, origin_form
from csdr_federation.settings import Settings
from csdr_service.errors import log_retry
from csdr_storage.store import open_store

logger = logging.getLogger(__name__)

PEER_SQL = """
SELECT name, url, api_key, collections, bbox, intersects, max_cloud, since, assets, status, node,
       cursor, push_url, wake_subscription
FROM csdr.federation_peers WHERE name = $1
"""
ACTIVE_SQL = "SELECT name FROM csdr.federation_peers WHERE status = 'active' ORDER BY name"
LOCK_SQL = "SELECT status, node, cursor FROM csdr.federation_peers WHERE name = $1 FOR UPDATE"
ORIGINS_SQL = (
    "SELECT id, content ->> 'csdr:origin' FROM pgstac.collections WHERE id = ANY($1::text[])"
)
DELETE_ITEMS_SQL = """
DELETE FROM pgstac.items i USING unnest($1::text[], $2::text[]) AS k(collection, id)
WHERE i.collection = k.collection AND i.id = k.id
"""
# This node's items mirrored from `node`, by collection and month (as the origin's digest).
MIRRORED_SQL = f"""
SELECT i.collection, to_char(i.datetime AT TIME ZONE 'UTC', 'YYYY-MM') AS month, i.id, {ROW_SQL}
FROM pgstac.items i JOIN pgstac.collections c ON c.id = i.collection
WHERE c.content ->> 'csdr:origin' = $1 AND ($2::text[] IS NULL OR i.collection = ANY($2))
"""
CHECKPOINT_SQL = """
UPDATE csdr.federation_peers
SET cursor = $2, node = $3, at_head = $4, applied = applied + $5, refused = refused + $6,
    lag_events = coalesce($7, lag_events), catalog_url = $8, last_page_at = now(),
    last_error = NULL, last_error_at = NULL, updated_at = now()
WHERE name = $1
"""
WAKE_SQL = "UPDATE csdr.federation_peers SET wake_subscription = $2 WHERE name = $1"
# How long after a failed attempt to subscribe at a peer's push service it is tried again.
WAKE_RETRY_S = 300.0
ERROR_SQL = """
UPDATE csdr.federation_peers SET last_error = $2, last_error_at = now(), at_head = false
WHERE name = $1
"""


class SyncError(Exception):
    """A peer's page cannot be fetched or applied; the message says why (recorded on the peer)."""


class CursorGone(SyncError):
    """The peer no longer keeps the events after our cursor (410): reconcile."""


class PageTooLarge(SyncError):
    """The peer serves smaller pages than asked for (its `page_max`)."""

    def __init__(self, most: int) -> None:
        super().__init__(f"pages of at most {most} events")
        self.most = most


# A feed's answer to a `limit` above its page_max (csdr_federation.routes.changes).
PAGE_MAX_ANSWER = re.compile(r"^limit: at most (\d+),")


def _page_max_of(response: httpx.Response) -> int | None:
    """The page_max a feed's 400 names, None when the 400 is about something else."""
    try:
        description = str(orjson.loads(response.content).get("description", ""))
    except (orjson.JSONDecodeError, AttributeError):
        return None
    found = PAGE_MAX_ANSWER.match(description)
    return int(found[1]) if found and int(found[1]) > 0 else None


@dataclass
class Peer:
    """A registered upstream node and what this node mirrors of it."""

    name: str
    url: str
    api_key: str
    collections: list[str] | None
    bbox: list[float] | None
    intersects: dict[str, Any] | None
    max_cloud: float | None
    since: datetime | None
    assets: str
    status: str
    node: str | None
    cursor: str | None
    push_url: str | None = None
    wake_subscription: uuid.UUID | None = None

    def params(self, limit: int) -> dict[str, str]:
        """The feed's query for this peer's next page."""
        params = {"limit": str(limit), **self.selection()}
        if self.cursor:
            params["after"] = self.cursor
        return params

    def selection(self) -> dict[str, str]:
        """What this node mirrors of the peer, as the feed's query parameters."""
        params = {}
        if self.collections:
            params["collections"] = ",".join(self.collections)
        if self.bbox:
            params["bbox"] = ",".join(repr(v) for v in self.bbox)
        if self.intersects:
            params["intersects"] = json.dumps(self.intersects)
        if self.max_cloud is not None:
            params["max_cloud"] = repr(self.max_cloud)
        if self.since is not None:
            params["since"] = self.since.isoformat()
        return params


@dataclass
class Applied:
    """What one page did here."""

    applied: int
    refused: int
    at_head: bool


@dataclass
class _PeerState:
    failures: int = 0
    due_at: float = 0.0
    reconciled_at: float = field(default_factory=time.monotonic)
    wake_tried_at: float = -WAKE_RETRY_S


class Worker:
    """Mirrors every active peer; runs as a task in the federation process."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        self.client = httpx.AsyncClient(timeout=settings.timeout_s)
        self.asset_root = open_store(settings.assets_url, Path(settings.asset_roots[0]))
        self.copier = assets.Copier(
            pool, self.client, self.asset_root, settings.asset_lease_s, settings.asset_attempts,
            budget_bytes=settings.lazy_budget_bytes, grace_s=settings.lazy_grace_s,
        )  # fmt: skip
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._states: dict[str, _PeerState] = {}
        self._page_max: dict[str, int] = {}

    async def start(self) -> None:
        """Start the loop and the asset copier."""
        await self.copier.start()
        self._task = asyncio.create_task(self._run(), name="federation-sync")

    async def stop(self) -> None:
        """Stop the loop (a page being applied is rolled back), the copier (a copy in flight is
        resumed later) and close the HTTP client."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.copier.stop()
        await self.client.aclose()

    def wake(self, name: str | None = None) -> None:
        """Ask a peer (or every peer) again now."""
        for peer, state in self._states.items():
            if name is None or peer == name:
                state.due_at = 0.0
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                names = [r[0] for r in await self.pool.fetch(ACTIVE_SQL)]
            except Exception as exc:
                log_retry(logger, "federation: cannot list peers", exc)
                names = []
            for name in names:
                state = self._states.setdefault(name, _PeerState())
                if state.due_at > time.monotonic():
                    continue
                try:
                    await self._subscribe_for_wake_ups(name, state)
                    await self.sync(name)
                    await self._reconcile_when_due(name, state)
                    state.failures = 0
                    state.due_at = time.monotonic() + self.settings.poll_interval_s
                except Exception as exc:  # one peer's failure must not stop the others
                    state.failures += 1
                    delay = self._backoff(state.failures)
                    state.due_at = time.monotonic() + delay
                    logger.warning(
                        "federation: peer %s failed (retry in %.0fs): %s", name, delay, exc
                    )
                    await self._record_error(name, str(exc) or repr(exc))
            due = [s.due_at for n, s in self._states.items() if n in names]
            timeout = max(0.05, min(due, default=time.monotonic() + 5) - time.monotonic())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), min(timeout, self.settings.poll_interval_s)
                )

    async def _reconcile_when_due(self, name: str, state: _PeerState) -> None:
        interval = self.settings.reconcile_interval_s
        if interval <= 0 or time.monotonic() - state.reconciled_at < interval:
            return
        row = await self.pool.fetchrow(PEER_SQL, name)
        if row is not None and row["status"] == "active":
            await self.reconcile(Peer(**dict(row)))
        state.reconciled_at = time.monotonic()

    async def _subscribe_for_wake_ups(self, name: str, state: _PeerState) -> None:
        """Subscribe at the peer's push service (`--push`) to what this node mirrors, the
        webhook being this node's wake-up route, once; a failure is retried after a while and
        costs only latency (the worker polls all the same)."""
        public = self.settings.public_url
        if not public or time.monotonic() - state.wake_tried_at < WAKE_RETRY_S:
            return
        row = await self.pool.fetchrow(PEER_SQL, name)
        if row is None or not row["push_url"] or row["wake_subscription"] is not None:
            return
        state.wake_tried_at = time.monotonic()
        peer, push_url = Peer(**dict(row)), str(row["push_url"])
        subscription: dict[str, Any] = {
            "webhook": {
                "url": f"{public.rstrip('/')}/federation/peers/{quote(name)}/wake",
                "secret": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
            }
        }
        if peer.collections:
            subscription["collections"] = peer.collections
        if peer.intersects:
            subscription["intersects"] = peer.intersects
        elif peer.bbox:
            subscription["bbox"] = peer.bbox
        try:
            response = await self.client.post(
                f"{push_url.rstrip('/')}/subscriptions",
                json=subscription,
                headers={"X-API-Key": peer.api_key},
            )
        except httpx.HTTPError as exc:
            logger.warning("federation: cannot subscribe at %s for wake-ups: %r", name, exc)
            return
        if response.status_code != 201:
            logger.warning(
                "federation: %s refused the wake-up subscription (%d): %s",
                name, response.status_code, response.text[:300],
            )  # fmt: skip
            return
        await self.pool.execute(WAKE_SQL, name, uuid.UUID(response.json()["id"]))
        logger.info("federation: %s wakes this node's worker through its push webhooks", name)

    def _backoff(self, failures: int) -> float:
        base = max(self.settings.poll_interval_s / 8, 0.1)
        ceiling = min(self.settings.backoff_max_s, base * 2 ** min(failures, 20))
        return random.uniform(ceiling / 2, ceiling)

    async def _record_error(self, name: str, error: str) -> None:
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            await self.pool.execute(ERROR_SQL, name, error[:1000])

    async def sync(self, name: str) -> int:
        """Pull and apply the peer's pages until it is at its head; return the pages applied.
        The next page is asked for while one is applied (it starts at the page's `next`, the
        cursor the page moves the checkpoint to); it is dropped unless the checkpoint is there
        when it is due."""
        pages = 0
        ahead: tuple[str, asyncio.Task[dict[str, Any]]] | None = None
        try:
            while True:
                row = await self.pool.fetchrow(PEER_SQL, name)
                if row is None or row["status"] != "active":
                    return pages
                peer = Peer(**dict(row))
                try:
                    page = await self._next_page(peer, ahead)
                except CursorGone:
                    logger.warning("federation: %s no longer keeps our cursor: reconciling", name)
                    if not await self.reconcile(peer):
                        return pages
                    continue
                finally:
                    ahead = None
                if not page["at_head"]:
                    after = replace(peer, cursor=page["next"])
                    ahead = (page["next"], asyncio.create_task(self.fetch(after)))
                done = await self.apply(peer, page)
                if done is None:
                    return pages  # paused, removed or moved on by another worker meanwhile
                pages += 1
                if done.at_head:
                    return pages
        finally:
            if ahead is not None:
                ahead[1].cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await ahead[1]

    async def _next_page(
        self, peer: Peer, ahead: tuple[str, asyncio.Task[dict[str, Any]]] | None
    ) -> dict[str, Any]:
        """The page after the peer's cursor: the one asked for ahead when it starts there."""
        if ahead is not None:
            cursor, task = ahead
            if cursor == peer.cursor:
                return await task
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        return await self.fetch(peer)

    async def _get(self, peer: Peer, path: str, params: dict[str, str]) -> dict[str, Any]:
        try:
            response = await self.client.get(
                f"{peer.url.rstrip('/')}{path}", params=params, headers={"X-API-Key": peer.api_key}
            )
        except httpx.HTTPError as exc:
            raise SyncError(f"{peer.url} unreachable: {exc!r}") from exc
        if response.status_code == 410:
            raise CursorGone(f"{peer.url}: cursor {peer.cursor} is older than its retention")
        if response.status_code == 400 and (most := _page_max_of(response)) is not None:
            raise PageTooLarge(most)
        if response.status_code != 200:
            raise SyncError(f"{peer.url} answered {response.status_code}: {response.text[:300]}")
        answer: dict[str, Any] = orjson.loads(response.content)
        if answer.get("node") == self.settings.node_name:
            raise SyncError(f"{peer.url} is this node itself ({answer['node']})")
        return answer

    async def fetch(self, peer: Peer) -> dict[str, Any]:
        """The peer's next page, of at most `page_size` events or the most the peer serves."""
        size = min(self.settings.page_size, self._page_max.get(peer.name, self.settings.page_size))
        try:
            return await self._get(peer, "/federation/changes", peer.params(size))
        except PageTooLarge as exc:
            logger.info("federation: %s serves pages of %d events at most", peer.name, exc.most)
            self._page_max[peer.name] = exc.most
            return await self._get(peer, "/federation/changes", peer.params(exc.most))

    async def reconcile(self, peer: Peer) -> bool:
        """Bring the mirror to the peer's current set without its feed: compare counts and
        digests per collection and month, re-list only the months that differ, upsert what is
        listed, delete what is not, and read on from the position the digests were taken at; one
        transaction. False when the peer was paused, removed or moved on meanwhile."""
        remote = await self._get(peer, "/federation/digest", peer.selection())
        node = remote["node"]
        digests = {(m["collection"], m["month"]): m for m in remote["months"]}
        theirs = {k: {"count": m["count"], "digest": m["digest"]} for k, m in digests.items()}
        ours, held = await self._local_digests(node, peer.collections)
        differing = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        changes: list[dict[str, Any]] = []
        listed: set[tuple[str, str]] = set()
        for collection, month in differing:
            if (collection, month) in theirs:
                query = {**peer.selection(), "collection": collection, "month": month}
                found = await self._get(peer, "/federation/items", query)
                changes += found["changes"]
                listed |= {(collection, c["id"]) for c in found["changes"] if c["op"] == "upsert"}
        extras = [key for k in differing for key in held.get(k, set()) if key not in listed]
        changes += [{"op": "delete", "collection": c, "id": i} for c, i in extras]
        page = {"node": node, "catalog": remote["catalog"], "changes": changes}
        page |= {"next": remote["cursor"], "at_head": False}
        done = await self.apply(peer, page)
        if done is not None:
            logger.info(
                "federation: reconciled %s: %d months differed, %d changes applied",
                peer.name,
                len(differing),
                done.applied,
            )
        return done is not None

    async def _local_digests(
        self, node: str, collections: list[str] | None
    ) -> tuple[dict[tuple[str, str], dict[str, Any]], dict[tuple[str, str], set[tuple[str, str]]]]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(MIRRORED_SQL, node, collections)
            items = await hydrate_rows(conn, [(r["collection"], r["tag"], r["row"]) for r in rows])
        lines = []
        held: dict[tuple[str, str], set[tuple[str, str]]] = {}
        for (collection, month, item_id, *_), item in zip(rows, items, strict=True):
            lines.append((collection, month, item_id, content_hash(origin_form(item))))
            held.setdefault((collection, month), set()).add((collection, item_id))
        return month_digests(lines), held

    async def apply(self, peer: Peer, page: dict[str, Any]) -> Applied | None:
        """Apply one page and move the checkpoint, in one transaction; None when the peer was
        paused, removed or moved on since `peer` was read (nothing is applied then)."""
        node = page["node"]
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(LOCK_SQL, peer.name)
            if row is None or row["status"] != "active" or row["cursor"] != peer.cursor:
                return None
            if row["node"] is not None and row["node"] != node:
                raise SyncError(f"{peer.url} now calls itself {node!r}, not {row['node']!r}")
            applied, refused, forgotten = await self._apply_changes(conn, peer, node, page)
            lag = 0 if page["at_head"] else page.get("behind")
            await conn.execute(
                CHECKPOINT_SQL, peer.name, page["next"], node, page["at_head"], applied, refused,
                lag, page["catalog"],
            )  # fmt: skip
        await asyncio.to_thread(assets.remove_files, forgotten)
        if peer.assets == "copy":
            self.copier.wake()
        if refused:
            logger.warning(
                "federation: refused %d changes from %s to collections of another origin",
                refused,
                peer.name,
            )
        return Applied(applied, refused, bool(page["at_head"]))

    async def _apply_changes(
        self, conn: asyncpg.Connection, peer: Peer, node: str, page: dict[str, Any]
    ) -> tuple[int, int, list[str]]:
        """Apply the page's changes in the caller's transaction: (applied, refused, files of
        asset copies to remove once it commits)."""
        changes: list[dict[str, Any]] = page["changes"]
        names = sorted({c["collection"] for c in changes})
        origins: dict[str, str | None] = dict(await conn.fetch(ORIGINS_SQL, names))
        refused = 0
        upserts: list[dict[str, Any]] = []
        deletes: list[tuple[str, str]] = []
        gone: list[str] = []
        forgotten: list[str] = []
        for change in changes:
            collection, op = change["collection"], change["op"]
            if op == "collection":
                if collection in origins and origins[collection] != node:
                    refused += 1
                    continue
                content = mirror_collection(
                    change["content"],
                    node,
                    change.get("href") or collection_url(page["catalog"], collection),
                    self.settings.node_name,
                    self.settings.catalog_url,
                )
                await conn.execute("SELECT pgstac.upsert_collection($1::jsonb)", content)
                origins[collection] = node
            elif collection not in origins:
                continue  # nothing of it here: a delete has nothing to do, an item no collection
            elif origins[collection] != node:
                refused += 1
            elif op == "upsert":
                item = mirror_item(change["item"], node, change["href"])
                if peer.assets in ("copy", "lazy"):
                    forgotten += await assets.plan_item(
                        conn, peer.name, self.asset_root, page["catalog"], item, node,
                        lazy=peer.assets == "lazy",
                    )  # fmt: skip
                upserts.append(item)
            elif op == "delete":
                deletes.append((collection, change["id"]))
            elif op == "collection_delete":
                gone.append(collection)
        chunk = self.settings.apply_chunk
        for start in range(0, len(upserts), chunk):
            await items.upsert(conn, upserts[start : start + chunk])
        if deletes:
            await conn.execute(DELETE_ITEMS_SQL, [c for c, _ in deletes], [i for _, i in deletes])
            forgotten += await assets.forget_items(conn, deletes)
        for collection in gone:
            forgotten += await assets.forget_collection(conn, collection)
            # Row by row first, so this node's own outbox records each item's deletion.
            await conn.execute("DELETE FROM pgstac.items WHERE collection = $1", collection)
            await conn.execute("SELECT pgstac.delete_collection($1)", collection)
        return len(upserts) + len(deletes) + len(gone), refused, forgotten
