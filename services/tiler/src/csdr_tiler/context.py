"""What the tiler learns about one request on its way through, in one typed object kept in the
ASGI scope's state: the access middleware fills in who asks and what they may see, the tile
cache what the answer's ETag stands on, the mosaic backend what the pyramid answered with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.types import Scope

from csdr_access import ANONYMOUS, Principal
from csdr_tiler.items import ItemVersion
from csdr_tiler.pyramid import Behind

# The one key of the tiler's in the request state.
STATE_KEY = "csdr_tiler"


@dataclass
class RequestContext:
    """One request's decisions, in the order the middlewares make them (see
    docs/tiler-internals.md)."""

    judged: bool = False
    """Whether the access middleware judged the request (open paths and OPTIONS are not)."""
    principal: Principal = ANONYMOUS
    visible: frozenset[str] | None = field(default_factory=frozenset)
    """The collections the caller may see; None: all (an administrator); empty: none."""
    cache_audience: str | None = None
    """Who may share a cached answer about an item: `public`, or `key:<prefix>`."""
    item_version: ItemVersion | None = None
    """The item's version, read by the access middleware (None: no such item, or not read)."""
    search_layer_kept: bool | None = None
    """Whether a search's low-zoom tile comes from its layer, as the ETag says (None: no
    decision; see csdr_tiler.caching)."""
    pyramid_behind: Behind | None = None
    """What a mosaic tile was answered with from the pyramid (set by csdr_tiler.mosaics)."""


def context_of(where: Scope | Any) -> RequestContext:
    """The request's context, made empty the first time: from an ASGI scope, or a Starlette
    Request (anything with `.scope`)."""
    scope: Scope = getattr(where, "scope", where)
    state = scope.setdefault("state", {})
    found = state.get(STATE_KEY)
    if found is None:
        found = state[STATE_KEY] = RequestContext()
    return found
