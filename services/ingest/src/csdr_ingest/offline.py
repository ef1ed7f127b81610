"""Archived scene packages registered as offline items: each product of the package becomes an
item with its metadata, the footprint of its XML's corner coordinates, a thumbnail (delivered, or
rendered from the raw image) and the shipped XML, but no COG (`order:status` orderable), and
csdr.offline_packages remembers where the package is. An order of the scene queues a production:
an ingest job on the same package (option `production`) that publishes the COGs under the same
item id, so the scene becomes online for good (services/orders)."""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path
from typing import Any

import psycopg
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from csdr_ingest.cresda.bands import bands_for
from csdr_ingest.cresda.collections import collection_for, collection_id
from csdr_ingest.cresda.items import build_offline_item
from csdr_ingest.cresda.items import item_id_for as product_item_id
from csdr_ingest.cresda.products import Product, find_products
from csdr_ingest.errors import PackageInvalid
from csdr_ingest.packages import unpacked
from csdr_ingest.pipeline import is_package, open_source, publish, staging
from csdr_ingest.settings import Settings
from csdr_ingest.thumbnail import write_thumbnail
from csdr_render.presets import derive_presets

logger = logging.getLogger(__name__)

OFFLINE_OPTION = "offline"
"""Job option: register the package as offline items instead of producing it."""


def register_offline(
    path: Path, conn: psycopg.Connection, settings: Settings, collection: str | None = None
) -> list[dict[str, Any]]:
    """Register every product of an archived package as an offline item; return the items."""
    if not is_package(path):
        raise PackageInvalid(f"{path.name}: only scene packages can be registered offline")
    with rasterio.Env(**settings.gdal_config()), unpacked(path, settings.work_dir) as root:
        return [
            register_product(p, path.resolve(), conn, settings, collection)
            for p in find_products(root)
        ]


def register_product(
    product: Product,
    source: Path,
    conn: psycopg.Connection,
    settings: Settings,
    collection: str | None,
) -> dict[str, Any]:
    """Publish one product as an offline item; an item already online is left as it is."""
    meta = product.metadata
    cid = collection or collection_id(meta.satellite, meta.sensor)
    item_id = product_item_id(meta)
    online = conn.execute(
        "SELECT csdr.scene_online(content) FROM pgstac.items WHERE collection = %s AND id = %s",
        (cid, item_id),
    ).fetchone()
    if online is not None and online[0]:  # the node's one rule (csdr_storage.availability)
        raise PackageInvalid(f"{cid}/{item_id} is online already; it stays online")
    with staging(settings, cid, item_id) as stage:
        copies = {"metadata": stage.path(".xml", "metadata")}
        shutil.copyfile(meta.source, copies["metadata"])
        if product.browse is not None:
            copies["overview"] = stage.path(".jpg", "overview")
            shutil.copyfile(product.browse, copies["overview"])
        if product.thumbnail is not None:
            thumb = stage.path(".jpg", "thumbnail")
            shutil.copyfile(product.thumbnail, thumb)
        else:
            thumb = stage.path(".png")
            raw_thumbnail(product, thumb)
        item = build_offline_item(product, item_id, cid, thumb, copies)
        bands = {p.key: bands_for(p.metadata) for p in product.parts}
        described = {
            key: {"roles": ["data"], "eo:bands": [{"common_name": b.common_name} for b in part]}
            for key, part in bands.items()
        }
        template = collection_for(
            meta.satellite,
            meta.sensor,
            bands,
            [p.metadata.gsd for p in product.parts],
            settings,
            {name: p.render() for name, p in derive_presets(described).items()},
            "image/png" if thumb.suffix == ".png" else "image/jpeg",
        )
        with conn.transaction():
            publish(conn, stage, item, template)
            conn.execute(
                "INSERT INTO csdr.offline_packages (collection, item_id, source)"
                " VALUES (%s, %s, %s) ON CONFLICT (collection, item_id)"
                " DO UPDATE SET source = excluded.source, registered_at = now()",
                (cid, item_id, str(source)),
            )
    logger.info("registered %s/%s offline from %s", cid, item_id, source)
    return item


def raw_thumbnail(product: Product, thumb: Path) -> None:
    """A thumbnail of the first part's raw image (sensor geometry: a preview, not a map)."""
    part = product.parts[0]
    with warnings.catch_warnings(), open_source(part.rasters[0]) as src:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        names = [b.common_name for b in bands_for(part.metadata, src.count)]
        rgb = [1]
        if {"red", "green", "blue"} <= set(names):
            rgb = [names.index(c) + 1 for c in ("red", "green", "blue")]
        write_thumbnail(src, thumb, rgb)
