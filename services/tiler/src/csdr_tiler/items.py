"""STAC items and collections as the tiler reads them: versioned, so a re-ingest is seen at once.

titiler-pgstac caches an item by id for 5 minutes (`get_stac_item`'s TTLCache), so a re-ingested
scene kept its old assets and statistics that long. Here every request reads the item's version
(a hash of its row, one primary-key lookup) and the item itself is cached under that version.
"""

import logging
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import pystac
from cachetools import LRUCache, TTLCache
from psycopg import Connection
from psycopg_pool import ConnectionPool

from csdr_render.presets import Preset, derive_presets, merge_stretches

logger = logging.getLogger(__name__)

T = TypeVar("T")

# A hash of the whole row (content, geometry, datetimes): any write of the item changes it; and
# when it last changed: its latest event (written by the database for every writer, migration
# 0004), else the `updated` the writer stated.
VERSION_SQL = """
    SELECT md5(i::text),
           (SELECT e.created_at FROM csdr.item_events e
            WHERE e.collection = i.collection AND e.item_id = i.id ORDER BY e.id DESC LIMIT 1),
           i.content -> 'properties' ->> 'updated'
    FROM pgstac.items i WHERE i.collection = %s AND i.id = %s
"""
ITEM_SQL = "SELECT pgstac.get_item(%s, %s)"
# An offline scene (csdr_storage.availability: archived, produced on order) has no COG yet: it
# gives a mosaic neither bands, zooms nor pixels (rio-tiler's reader refuses an item without a
# raster asset: MissingAssets, a 400), so mosaics read online scenes only: `ONLINE_FILTER` in
# pgSTAC searches, csdr.scene_online (migration 0046) in SQL.
ONLINE_SQL = "csdr.scene_online(i.content)"
# The latest online items of a collection, hydrated (pgSTAC stores item fields shared with the
# collection's item_assets only once, in the collection).
LATEST_ASSETS_SQL = f"""
    SELECT pgstac.content_hydrate(i) -> 'assets' FROM pgstac.items i
    WHERE i.collection = %s AND {ONLINE_SQL} ORDER BY i.datetime DESC LIMIT %s
"""
SEARCH_SQL = """
    SELECT search -> 'collections', metadata -> 'bounds' FROM pgstac.searches WHERE hash = %s
"""
LATEST_ITEM_SQL = f"""
    SELECT pgstac.content_hydrate(i) FROM pgstac.items i
    WHERE i.collection = %s AND {ONLINE_SQL} ORDER BY i.datetime DESC LIMIT 1
"""
COLLECTION_BBOX_SQL = """
    SELECT content -> 'extent' -> 'spatial' -> 'bbox' -> 0 FROM pgstac.collections WHERE id = %s
"""
# How many of a collection's latest items set its presets' stretch.
COLLECTION_SAMPLE = 20


class ItemNotFound(LookupError):
    """No such item in that collection."""


class CollectionNotFound(LookupError):
    """No such collection, or a collection with no item to derive presets from."""


class SearchNotFound(LookupError):
    """No registered search with that id."""


@dataclass(frozen=True)
class ItemVersion:
    """An item's version (a hash of its row) and when it last changed, if known."""

    version: str
    changed_at: datetime | None


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 time with a zone, or None for anything else."""
    try:
        found = datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    return found if found is not None and found.tzinfo is not None else None


@dataclass(frozen=True)
class Search:
    """What the tiler needs of a registered search: its collections and registered bounds."""

    collections: list[str]
    bounds: tuple[float, float, float, float] | None


class Catalogue:
    """Bounded, thread-safe caches of what tiles need from pgSTAC."""

    def __init__(self, pool: ConnectionPool, items_max: int, collections_ttl_s: float) -> None:
        """Read through `pool`; keep up to `items_max` item versions and collection presets for
        `collections_ttl_s` (a collection's stretch changes slowly with new items)."""
        self.pool = pool
        self._lock = threading.Lock()
        self._items: LRUCache[Hashable, Any] = LRUCache(maxsize=items_max)
        self._versions: LRUCache[Hashable, str] = LRUCache(maxsize=items_max)
        """The version cached for each (kind, collection, item)."""
        self._collections: TTLCache[Hashable, Any] = TTLCache(
            maxsize=items_max, ttl=collections_ttl_s
        )

    def _cached(self, cache: LRUCache[Hashable, Any], key: Hashable, load: Callable[[], T]) -> T:
        with self._lock:
            if key in cache:
                return cache[key]
        value = load()
        with self._lock:
            cache[key] = value
            if cache is self._items:
                self._forget_older_versions(key)
        return value

    def _forget_older_versions(self, key: Hashable) -> None:
        """Drop what is cached for other versions of the item of `key` (`(kind, collection,
        item, version)`): once a re-ingest changed the item, requests ask for its new version
        only, and the old ones would keep their place until `items_max` newer ones pushed them
        out. Call with the lock held."""
        assert isinstance(key, tuple)
        *item, version = key
        older = self._versions.get(tuple(item))
        if older is not None and older != version:
            self._items.pop((*item, older), None)
        self._versions[tuple(item)] = version

    def item_version(
        self, collection_id: str, item_id: str, conn: Connection[Any] | None = None
    ) -> ItemVersion:
        """The item's current version (read on `conn` when given); ItemNotFound when it does
        not exist."""
        if conn is None:
            with self.pool.connection() as own:
                return self.item_version(collection_id, item_id, own)
        row = conn.execute(VERSION_SQL, (collection_id, item_id)).fetchone()
        if row is None:
            raise ItemNotFound(f"no item '{item_id}' in collection '{collection_id}'")
        return ItemVersion(str(row[0]), row[1] or parse_time(row[2]))

    def item(self, collection_id: str, item_id: str, version: str) -> pystac.Item:
        """The item at `version`, from the cache or pgSTAC."""

        def load() -> pystac.Item:
            with self.pool.connection() as conn:
                row = conn.execute(ITEM_SQL, (item_id, collection_id)).fetchone()
            if row is None or row[0] is None:
                raise ItemNotFound(f"no item '{item_id}' in collection '{collection_id}'")
            return pystac.Item.from_dict(row[0], preserve_dict=False)

        return self._cached(self._items, ("item", collection_id, item_id, version), load)

    def cached_item(self, collection_id: str, item_id: str, version: str) -> pystac.Item | None:
        """The item at `version` if the cache holds it (no database access)."""
        with self._lock:
            found: pystac.Item | None = self._items.get(("item", collection_id, item_id, version))
        return found

    def cached_item_presets(
        self, collection_id: str, item_id: str, version: str
    ) -> dict[str, Preset] | None:
        """The presets of the item at `version` if the cache holds them (no database access)."""
        with self._lock:
            found: dict[str, Preset] | None = self._items.get(
                ("presets", collection_id, item_id, version)
            )
        return found

    def item_presets(self, item: pystac.Item, version: str) -> dict[str, Preset]:
        """The presets an item's assets support."""
        key = ("presets", item.collection_id, item.id, version)
        assets = {k: a.to_dict() for k, a in item.assets.items()}
        return self._cached(self._items, key, lambda: derive_presets(assets))

    def collection_presets(self, collection_id: str) -> dict[str, Preset]:
        """Presets for a collection mosaic: its latest online items' bands and median stretch."""

        def load() -> dict[str, Preset]:
            with self.pool.connection() as conn:
                rows = conn.execute(
                    LATEST_ASSETS_SQL, (collection_id, COLLECTION_SAMPLE)
                ).fetchall()
            if not rows:
                raise CollectionNotFound(f"collection '{collection_id}' has no online items")
            return merge_stretches([derive_presets(r[0] or {}) for r in rows])

        return self._cached(self._collections, ("collection", collection_id), load)

    def latest_item(self, collection_id: str) -> pystac.Item:
        """The collection's most recent online item."""
        with self.pool.connection() as conn:
            row = conn.execute(LATEST_ITEM_SQL, (collection_id,)).fetchone()
        if row is None:
            raise CollectionNotFound(f"collection '{collection_id}' has no online items")
        return pystac.Item.from_dict(row[0], preserve_dict=False)

    def collection_bbox(self, collection_id: str) -> tuple[float, float, float, float]:
        """The collection's overall spatial extent."""
        with self.pool.connection() as conn:
            row = conn.execute(COLLECTION_BBOX_SQL, (collection_id,)).fetchone()
        if row is None:
            raise CollectionNotFound(f"no collection '{collection_id}'")
        west, south, east, north = row[0] or (-180, -90, 180, 90)
        return (west, south, east, north)

    def search(self, search_id: str) -> Search:
        """A registered search; SearchNotFound when none has that id or it names no collection."""
        with self.pool.connection() as conn:
            row = conn.execute(SEARCH_SQL, (search_id,)).fetchone()
        if row is None:
            raise SearchNotFound(f"no registered search '{search_id}'")
        if not row[0]:
            raise SearchNotFound(
                f"search '{search_id}' names no collection: presets need one to derive bands"
            )
        bounds = tuple(row[1]) if row[1] and len(row[1]) == 4 else None
        return Search([str(c) for c in row[0]], bounds)

    def search_collection(self, search_id: str, visible: frozenset[str] | None) -> str:
        """The collection a registered search takes its presets and zooms from: the first it
        names that the caller sees (`visible`; None: all), so no restricted scene sets them."""
        named = self.search(search_id).collections
        seen = [c for c in named if visible is None or c in visible]
        if not seen:
            raise SearchNotFound(f"no registered search '{search_id}'")
        return seen[0]

    def search_presets(self, search_id: str, visible: frozenset[str] | None) -> dict[str, Preset]:
        """Presets for a registered search: those of the first collection it names that the
        caller sees."""
        return self.collection_presets(self.search_collection(search_id, visible))
