"""HTTP caching of tiles: ETags tied to what the pixels come from, 304 on a matching
If-None-Match, Cache-Control per answer, and a bounded in-process cache of rendered responses.

- Everything under one item (`/collections/{c}/items/{i}/...`): the version is a hash of the
  item's row (csdr_tiler.items), read with a primary-key lookup; a re-ingest changes it.
- Mosaic tiles (`/collections/{c}/[presets/{p}/]tiles/...`, `/searches/{id}/[presets/{p}/]tiles/
  ...`, WebMercatorQuad): the version is the generation of the tile (its ancestor at the
  pyramid's deepest zoom, below it) in each collection the mosaic reads for this caller, counted
  by the database for every write of an item under it (migration 0011), plus the preset's
  stretch for preset routes. Other mosaic answers (TileJSON, WMTS, statistics) are not cached.

A low-zoom mosaic tile answered from pyramid tiles behind their generation (while the refresher
renders them anew, csdr_tiler.pyramid), or from what is built so far of a tile not built yet,
gets an ETag of its own (which changes as the refresher stores tiles), a max-age that ends when
it may no longer be shown, `X-Csdr-Pyramid: behind` or `partial`, and stays out of the response
cache.

Cache-Control max-age follows how long ago the pixels last changed: a tenth of that time, the
heuristic freshness of RFC 9111 section 4.2.2, between a floor and a ceiling (settings). A scene
ingested a minute ago may well be re-ingested (a fix); one untouched for a year will not change
tomorrow. Browsers and CDNs revalidate with the ETag when it runs out.

Answers about an item of a restricted collection are kept per API key, mosaic answers per set of
collections read (csdr_tiler.access judged the caller before this runs), so a cached answer or a
304 never reaches a caller who may not see it. For caches outside the process (a CDN, a proxy)
the same rule is written in headers (docs/storage.md, "Tiles behind a CDN"): every answer
says `Vary: Authorization, X-API-Key`, an answer to a keyed request is `private` (a `?api_key=`
is part of the URL, and `private` keeps even that out of shared caches), and public answers may
be served stale while the cache revalidates (`stale-while-revalidate`).
"""

import hashlib
import math
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

import anyio.to_thread
from cachetools import LRUCache
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from csdr_render.presets import Preset
from csdr_tiler.access import search_collections
from csdr_tiler.context import RequestContext, context_of
from csdr_tiler.items import Catalogue
from csdr_tiler.mosaics import ALL_COLLECTIONS_SQL, search_body, search_for
from csdr_tiler.paths import ITEM_PATH, MOSAIC_TILE_PATH
from csdr_tiler.pyramid import Behind, Layer, Pyramid

# On an answer from pyramid tiles not current: `behind` (a change is being rendered) or `partial`
# (the tile is being built; the answer shows what is built so far under it).
PYRAMID_HEADER = b"x-csdr-pyramid"


@dataclass(frozen=True)
class Cached:
    """A rendered 200 response."""

    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass(frozen=True)
class Version:
    """What an answer's ETag is made of, and when its pixels last changed (None: unknown)."""

    tag: str
    changed_at: datetime | None


@dataclass(frozen=True)
class Freshness:
    """Cache-Control bounds: max-age is a tenth of the age of the last change, within these;
    a CDN may then serve a copy for `stale_s` more while it revalidates (RFC 5861)."""

    min_s: int
    max_s: int
    stale_s: int = 0

    def max_age(self, changed_at: datetime | None, now: datetime | None = None) -> int:
        """Seconds a client may reuse an answer whose pixels last changed at `changed_at`."""
        if changed_at is None:
            return self.max_s
        age_s = ((now or datetime.now(UTC)) - changed_at).total_seconds()
        return int(min(self.max_s, max(self.min_s, age_s / 10)))

    def headers(self, changed_at: datetime | None) -> list[tuple[bytes, bytes]]:
        """Cache-Control, and Last-Modified when the change time is known."""
        cache = f"public, max-age={self.max_age(changed_at)}"
        if self.stale_s > 0:
            cache += f", stale-while-revalidate={self.stale_s}"
        found = [(b"cache-control", cache.encode())]
        if changed_at is not None:
            found.append(
                (
                    b"last-modified",
                    format_datetime(changed_at.astimezone(UTC), usegmt=True).encode(),
                )
            )
        return found


class CacheOutcomes:
    """How many cacheable answers (item answers, mosaic tiles) were served from the response
    cache (`hit`), as a 304 to a matching If-None-Match (`revalidated`), or rendered (`miss`).
    Thread-safe counts, read by the tiler's metrics at scrape time."""

    OUTCOMES = ("hit", "revalidated", "miss")

    def __init__(self) -> None:
        """All counts at zero."""
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.OUTCOMES, 0)

    def count(self, outcome: str) -> None:
        """Count one answer of `outcome`."""
        with self._lock:
            self._counts[outcome] += 1

    def counts(self) -> dict[str, int]:
        """The counts so far, by outcome."""
        with self._lock:
            return dict(self._counts)


class ResponseCache:
    """Responses by ETag, bounded by the total size of their bodies."""

    def __init__(self, max_bytes: int, max_entry_bytes: int) -> None:
        """Hold up to `max_bytes` of bodies, none larger than `max_entry_bytes`."""
        self.max_entry_bytes = max_entry_bytes
        self._lock = threading.Lock()
        self._cache: LRUCache[str, Cached] = LRUCache(
            maxsize=max_bytes, getsizeof=lambda c: len(c.body) + 200
        )

    def get(self, etag: str) -> Cached | None:
        """The response stored under `etag`, if any."""
        with self._lock:
            return self._cache.get(etag)

    def put(self, etag: str, response: Cached) -> None:
        """Store a response unless it is too large to be worth it."""
        if len(response.body) <= self.max_entry_bytes:
            with self._lock:
                self._cache[etag] = response


def etag_for(version: str, scope: Scope, audience: str = "public") -> str:
    """A strong ETag from the version, who may share the answer (`public`, one key for a
    restricted item, the collections a mosaic read) and the request's path and query."""
    digest = hashlib.sha256(version.encode())
    digest.update(b"\0" + audience.encode() + b"\0")
    digest.update(scope["path"].encode())
    digest.update(b"?" + scope.get("query_string", b""))
    return f'"{digest.hexdigest()[:32]}"'


def matches(if_none_match: bytes, etag: str) -> bool:
    """RFC 9110 If-None-Match: `*` or any listed tag (weak comparison)."""
    tags = {t.strip().removeprefix("W/") for t in if_none_match.decode("latin-1").split(",")}
    return "*" in tags or etag in tags


def without_cache_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Response headers minus those this middleware sets per answer."""
    return [(k, v) for k, v in headers if k.lower() not in (b"cache-control", b"last-modified")]


def behind_etag(etag: str, behind: Behind) -> str:
    """The ETag of an answer made of pyramid tiles behind the version `etag` names."""
    digest = hashlib.sha256(etag.encode() + repr(sorted(behind.tiles)).encode())
    return f'"{digest.hexdigest()[:32]}"'


def behind_cache_control(behind: Behind) -> str:
    """Reusable until the oldest change it does not show has been visible for the refresher
    interval (at least a second)."""
    return f"public, max-age={max(1, math.floor(behind.max_age_s))}, must-revalidate"


class MosaicVersions:
    """The version of a mosaic tile for one caller (see the module docstring)."""

    def __init__(self, catalogue: Catalogue, pyramid: Pyramid) -> None:
        """Read presets through `catalogue` and generations through `pyramid`."""
        self.catalogue = catalogue
        self.pyramid = pyramid

    def collections(self, search_id: str, visible: frozenset[str] | None) -> list[str]:
        """The collections a registered search reads for a caller who sees `visible`."""
        _, named = search_collections(self.catalogue.pool, search_id)
        if named:
            return sorted(c for c in named if visible is None or c in visible)
        if visible is not None:
            return sorted(visible)
        with self.catalogue.pool.connection() as conn:
            return [str(r[0]) for r in conn.execute(ALL_COLLECTIONS_SQL).fetchall()]

    def search_layer_kept(self, search_id: str, visible: frozenset[str] | None) -> bool | None:
        """Whether a search's low-zoom tile comes from its layer for this caller, or from the
        scenes (False: it has none); None when the node keeps no search layers. A scene read
        stops at pgSTAC's 100 scenes a search: its answer must not be taken for the layer's once
        the layer exists, nor the other way round, so this goes into the ETag, and the render
        follows it (csdr_tiler.mosaics). Asking is a use of the layer
        (csdr_tiler.pyramid.search_layers), answered from the cache or not."""
        searches = self.pyramid.searches
        if searches is None or searches.max_layers < 1:
            return None
        body = search_body(self.catalogue.pool, search_id)
        found = search_for(self.catalogue.pool, search_id, body, visible) if body else None
        return found is not None and searches.use(Layer.of_search(*found))

    def version(
        self, match: re.Match[str], visible: frozenset[str] | None
    ) -> tuple[Version, list[str], bool | None]:
        """The tile's version, the collections it reads and, for a search's low-zoom tile,
        whether its layer answers (see `search_layer_kept`)."""
        presets: dict[str, Preset] = {}
        if match["collection"] is not None:
            collections = [match["collection"]]
            if match["preset"]:
                presets = self.catalogue.collection_presets(match["collection"])
        else:
            collections = self.collections(match["search"], visible)
            if match["preset"]:
                presets = self.catalogue.search_presets(match["search"], visible)
        z, x, y = self.pyramid.versioning_tile(int(match["z"]), int(match["x"]), int(match["y"]))
        generations = self.pyramid.generations(collections, z, x, y)
        tag = repr(sorted((c, g.generation) for c, g in generations.items()))
        if match["preset"]:
            tag += repr(presets.get(match["preset"]))
        layer_kept = None
        if match["search"] is not None and int(match["z"]) <= self.pyramid.max_zoom:
            layer_kept = self.search_layer_kept(match["search"], visible)
            if layer_kept is not None:
                tag += f"|layer:{layer_kept}"
        times = [g.changed_at for g in generations.values() if g.changed_at is not None]
        return Version(tag, max(times) if times else None), collections, layer_kept


class TileCacheMiddleware:
    """ETag, 304, Cache-Control and the response cache for item answers and mosaic tiles."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        max_entry_bytes: int,
        freshness: Freshness,
        outcomes: CacheOutcomes | None = None,
    ) -> None:
        """Wrap `app` with a cache of up to `max_bytes` of responses; count into `outcomes`."""
        self.app = app
        self.cache = ResponseCache(max_bytes, max_entry_bytes)
        self.freshness = freshness
        self.outcomes = outcomes or CacheOutcomes()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer from the cache or a 304 when possible, else render and remember."""
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        context = context_of(scope)
        path = scope.get("path", "")
        found: tuple[Version, str] | None = None
        if ITEM_PATH.match(path) is not None:
            found = self._item_version(context)
        elif (tile := MOSAIC_TILE_PATH.match(path)) is not None and context.judged:
            found = await self._mosaic_version(scope, context, tile)
        if found is None:
            await self.app(scope, receive, send)
            return
        version, audience = found
        etag = etag_for(version.tag, scope, audience)
        cache_headers = self.freshness.headers(version.changed_at)
        headers = dict(scope.get("headers") or [])
        if matches(headers.get(b"if-none-match", b""), etag):
            self.outcomes.count("revalidated")
            await send(
                {
                    "type": "http.response.start",
                    "status": 304,
                    "headers": [(b"etag", etag.encode()), *cache_headers],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        if (hit := self.cache.get(etag)) is not None:
            self.outcomes.count("hit")
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [*hit.headers, *cache_headers],
                }
            )
            await send({"type": "http.response.body", "body": hit.body})
            return
        self.outcomes.count("miss")
        await self._render(scope, receive, send, context, etag, cache_headers)

    @staticmethod
    def _item_version(context: RequestContext) -> tuple[Version, str] | None:
        # Set by csdr_tiler.access once the caller may see the item; without it, no caching.
        audience = context.cache_audience
        if audience is None:
            return None
        # Read by csdr_tiler.access with the caller's visibility; absent: no such item, and the
        # route answers the 404.
        found = context.item_version
        if found is None:
            return None
        return Version(found.version, found.changed_at), audience

    async def _mosaic_version(
        self, scope: Scope, context: RequestContext, match: re.Match[str]
    ) -> tuple[Version, str] | None:
        app_state = scope["app"].state
        versions = MosaicVersions(app_state.csdr_catalogue, app_state.csdr_pyramid)
        try:
            version, collections, layer_kept = await anyio.to_thread.run_sync(
                versions.version, match, context.visible
            )
        except LookupError:
            return None  # no such collection or search, no presets: the route answers
        # The render answers from the source the ETag names (csdr_tiler.mosaics).
        context.search_layer_kept = layer_kept
        return version, "mosaic:" + ",".join(collections)

    async def _render(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        context: RequestContext,
        etag: str,
        cache_headers: list[tuple[bytes, bytes]],
    ) -> None:
        start: Message = {}
        chunks: list[bytes] = []

        async def remember(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                behind = context.pyramid_behind
                if message["status"] in (200, 204) and behind is not None and behind.tiles:
                    # Pixels of stored tiles behind the version, or of a tile not built yet
                    # (204: nothing of it yet): their own tag, kept only as long as they may be
                    # shown, and not in the response cache.
                    own = without_cache_headers(list(message.get("headers", [])))
                    message["headers"] = [
                        *own,
                        (b"etag", behind_etag(etag, behind).encode()),
                        (b"cache-control", behind_cache_control(behind).encode()),
                        (PYRAMID_HEADER, b"partial" if behind.partial else b"behind"),
                    ]
                elif message["status"] == 200:
                    own = without_cache_headers(list(message.get("headers", [])))
                    message["headers"] = [*own, (b"etag", etag.encode()), *cache_headers]
                    start = {**message, "headers": own + [(b"etag", etag.encode())]}
            elif start and message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    self.cache.put(etag, Cached(list(start["headers"]), b"".join(chunks)))
            await send(message)

        await self.app(scope, receive, remember)
