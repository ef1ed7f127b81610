"""Where and at which zooms an item or a mosaic has imagery, for WMTS limits and TileJSON."""

from dataclasses import dataclass

import pystac

from csdr_tiler.datasets import ItemReader
from csdr_tiler.items import Catalogue

Bounds = tuple[float, float, float, float]


@dataclass(frozen=True)
class Extent:
    """Geographic bounds (lon/lat) and the WebMercatorQuad zoom range that shows them."""

    bounds: Bounds
    minzoom: int
    maxzoom: int


def item_extent(item: pystac.Item) -> Extent:
    """The item's bbox and zooms, from its projection metadata (rio-tiler's rule: maxzoom is
    the level nearest its resolution, minzoom where its smallest overview fits one tile): our
    reader's, which derives them once per item object (the item cache keeps one a version)."""
    with ItemReader(item) as reader:
        minzoom, maxzoom = reader.minzoom, reader.maxzoom
    west, south, east, north = item.bbox or reader.bounds
    return Extent((west, south, east, north), minzoom, maxzoom)


def collection_extent(
    catalogue: Catalogue, collection_id: str, bounds: Bounds | None = None
) -> Extent:
    """A collection mosaic: its extent (or `bounds`), zooms of its latest scene. Below that
    minzoom each tile would read the smallest overview of every scene under it."""
    latest = item_extent(catalogue.latest_item(collection_id))
    return Extent(
        bounds or catalogue.collection_bbox(collection_id), latest.minzoom, latest.maxzoom
    )
