"""One input raster to one published item: COG, thumbnail, STAC item, pgSTAC, all or nothing.

Files are written under versioned names first and the item is upserted only once they are
complete; if anything fails the new files are removed, and files of a replaced version are
removed only after the new item is committed. Readers never see an item without its assets.
"""

import logging
import shutil
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import rasterio
from rasterio.errors import RasterioError

from csdr_ingest import pgstac
from csdr_ingest.cog import write_cog
from csdr_ingest.errors import NotGeoreferenced, SourceNotFound, SourceUnreadable
from csdr_ingest.items import acquisition_time, build_item, item_id_for
from csdr_ingest.settings import Settings
from csdr_ingest.thumbnail import write_thumbnail

logger = logging.getLogger(__name__)


def open_source(path: Path) -> rasterio.DatasetReader:
    """Open an input raster, or say exactly why it cannot be."""
    if not path.is_file():
        raise SourceNotFound(f"{path}: no such file on the ingest server")
    try:
        src = rasterio.open(path)
    except RasterioError as exc:
        raise SourceUnreadable(f"{path.name}: not a readable raster ({exc})") from exc
    if src.crs is None:
        src.close()
        raise NotGeoreferenced(
            f"{path.name}: the raster has no CRS or geotransform; sensor-geometry scenes need "
            "their RPC sidecar and are ingested as CRESDA packages"
        )
    return src


def ingest_file(
    path: Path,
    conn: psycopg.Connection,
    settings: Settings,
    collection: str | None = None,
    when: datetime | None = None,
) -> dict[str, Any]:
    """Publish one raster as a STAC item in pgSTAC; return the item."""
    collection = collection or settings.default_collection
    with open_source(path) as src:
        item_id = item_id_for(path)
        acquired = acquisition_time(src, when)
        item_dir = settings.assets_dir / collection / item_id
        item_dir.mkdir(parents=True, exist_ok=True)
        version = uuid.uuid4().hex[:8]
        cog = item_dir / f"{item_id}_{version}.tif"
        thumb = item_dir / f"{item_id}_{version}.png"
        written = [cog, thumb]
        try:
            try:
                write_cog(src, cog, settings.compression, settings.blocksize)
            except RasterioError as exc:
                raise SourceUnreadable(f"{path.name}: reading the raster failed ({exc})") from exc
            with rasterio.open(cog) as published:
                write_thumbnail(published, thumb)
            item = build_item(cog, thumb, item_id, collection, acquired).to_dict()
            with conn.transaction():
                replaced = pgstac.asset_hrefs(conn, collection, item_id)
                pgstac.publish_item(conn, item, settings.collection_license)
        except BaseException:
            _remove(written, item_dir)
            raise
    _remove([Path(h) for h in replaced - {str(cog), str(thumb)}], item_dir)
    logger.info("published %s/%s from %s", collection, item_id, path)
    return item


def _remove(paths: list[Path], item_dir: Path) -> None:
    """Delete files we wrote (and their directory once empty)."""
    for p in paths:
        if p.parent == item_dir:  # never delete outside the item's own directory
            p.unlink(missing_ok=True)
    if item_dir.exists() and not any(item_dir.iterdir()):
        shutil.rmtree(item_dir, ignore_errors=True)
