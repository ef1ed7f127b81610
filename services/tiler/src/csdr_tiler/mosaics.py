"""Mosaics (collections and registered searches) filtered at tile time by the caller's visibility.

A registered search is shared by its hash: whoever registered it (an administrator, say), every
caller of its tiles gets only the scenes of collections they may see. The hook is titiler-pgstac's
`PGSTACBackend.get_assets`, the one place every mosaic route (tile, TileJSON bounds aside, point,
part/bbox, feature statistics, assets lists, WMTS tiles) asks pgSTAC for scenes: it runs
`pgstac.geojsonsearch(geometry, search hash, ...)`, and the search a hash names cannot be changed
per caller. So the subclass below runs a *derived* search instead: the registered one (its
filter, datetime, ids, sort order) with its collections narrowed to the caller's visible ones,
registered once (pgSTAC's `search_query`, keyed by content) and remembered per process.

Filtering the rows afterwards would be wrong, not only slower: pgSTAC's `skipcovered` and
`exitwhenfull` drop a public scene that lies under a private one, and filtering after that would
leave a hole where the public scene's pixels belong.
"""

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import attr
from cachetools import LRUCache
from geojson_pydantic.geometries import Geometry
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from starlette.requests import Request
from titiler.pgstac.backend import PGSTACBackend
from titiler.pgstac.dependencies import BackendParams
from titiler.pgstac.reader import Item

# Derived searches are not mosaics of their own: titiler's and our search lists show only
# `metadata.type == "mosaic"`.
DERIVED_TYPE = "csdr-visible-subset"
DERIVE_SQL = "SELECT hash FROM pgstac.search_query(%s, _metadata => %s)"

_derived: LRUCache[tuple[str, tuple[str, ...]], str] = LRUCache(maxsize=10_000)
_derived_lock = threading.Lock()


def allowed_collections(named: Sequence[str] | None, visible: frozenset[str]) -> list[str] | None:
    """The collections a search may read for a caller who sees `visible`: those it names that
    are visible (or every visible one when it names none); None when that is all it names."""
    if named and set(named) <= visible:
        return None
    return sorted(visible.intersection(named) if named else visible)


def derived_search(
    pool: ConnectionPool, search_id: str, search: dict[str, Any], allowed: list[str]
) -> str:
    """The hash of `search` restricted to `allowed` collections (registered on first use)."""
    key = (search_id, tuple(allowed))
    with _derived_lock:
        if (found := _derived.get(key)) is not None:
            return found
    body = {**search, "collections": allowed}
    with pool.connection() as conn:
        row = conn.execute(
            DERIVE_SQL, (Jsonb(body), Jsonb({"type": DERIVED_TYPE, "of": search_id}))
        ).fetchone()
    assert row is not None  # search_query always returns the (new or existing) row
    with _derived_lock:
        _derived[key] = str(row[0])
    return str(row[0])


@attr.s
class VisibleBackend(PGSTACBackend):
    """PGSTACBackend whose scenes come only from the caller's visible collections."""

    visible: frozenset[str] | None = attr.ib(default=None)
    """The caller's visible collections; None: all (an administrator)."""

    def search_for_caller(self) -> str | None:
        """The search to run for this caller: the registered one, a derived one, or None when
        the caller may see none of its collections."""
        if self.visible is None:
            return str(self.input)
        search = self.info().input_search
        allowed = allowed_collections(search.get("collections"), self.visible)
        if allowed is None:
            return str(self.input)
        if not allowed:
            return None
        return derived_search(self.pool, str(self.input), search, allowed)

    def get_assets(self, geom: Geometry, **kwargs: Any) -> list[Item]:
        """The scenes under `geom` that the caller may see, in the search's order."""
        search_id = self.search_for_caller()
        if search_id is None:
            return []
        if search_id == self.input:
            return super().get_assets(geom, **kwargs)
        derived = PGSTACBackend(
            search_id,
            self.pool,
            tms=self.tms,
            reader=self.reader,
            reader_options=self.reader_options,
        )
        return derived.get_assets(geom, **kwargs)


@dataclass(init=False)
class VisibleBackendParams(BackendParams):
    """titiler-pgstac's backend parameters plus the caller's visible collections (set on the
    request by csdr_tiler.access)."""

    visible: frozenset[str] | None = field(init=False)

    def __init__(self, request: Request):
        """The pool, and the visibility the access middleware found (none: see nothing)."""
        super().__init__(request)
        self.visible = getattr(request.state, "visible", frozenset())
