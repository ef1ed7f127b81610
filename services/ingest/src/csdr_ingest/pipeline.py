"""Inputs to published items: COGs, thumbnails, STAC item, pgSTAC, all or nothing.

Files are written under versioned names first (in the asset store's directory, or in a scratch
directory uploaded to the bucket, csdr_storage) and the item is upserted only once they are
complete and stored; if anything fails the new files are removed, and files of a replaced
version are removed only after the new item is committed. Readers never see an item without its
assets. Each version in progress is recorded by a marker under the store's `.pending/`, so files
left by a process killed mid-ingest are found and removed when the next worker on its host
starts (`remove_abandoned`). A GeoTIFF (`ingest_file`) and a CRESDA scene package (`ingest_package`)
go through the same `Staging` and `publish`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import rasterio
from rasterio.errors import RasterioError

from csdr_ingest import claims, pgstac
from csdr_ingest import replaced as replaced_files
from csdr_ingest.cog import write_cog
from csdr_ingest.cresda.bands import bands_for
from csdr_ingest.cresda.collections import collection_for, collection_id
from csdr_ingest.cresda.items import build_product_item
from csdr_ingest.cresda.items import item_id_for as product_item_id
from csdr_ingest.cresda.metadata import ProductMetadata, is_product_metadata
from csdr_ingest.cresda.mosaic import orthomosaic
from csdr_ingest.cresda.products import BANDS, SEGMENTS, SINGLE, Part, Product, find_products
from csdr_ingest.cresda.rpctext import read_rpc_txt
from csdr_ingest.cresda.stack import stacked
from csdr_ingest.cresda.sun import require_agreement
from csdr_ingest.elevation import (
    check_elevation,
    describe_elevation,
    elevation_collection,
    elevation_kind,
)
from csdr_ingest.errors import (
    NotGeoreferenced,
    PackageInvalid,
    RpcMissing,
    SourceNotFound,
    SourceUnreadable,
)
from csdr_ingest.files import describe_files
from csdr_ingest.items import acquisition_time, build_item, item_id_for
from csdr_ingest.packages import (
    is_archive,
    remove_abandoned_scratch,
    scratch_prefix,
    scratch_root,
    unpacked,
)
from csdr_ingest.rpc import georeferenced
from csdr_ingest.settings import Settings
from csdr_ingest.terrain import scene_dem
from csdr_ingest.thumbnail import write_thumbnail
from csdr_render.presets import derive_presets
from csdr_service.errors import run_again_on_conflict
from csdr_storage.store import AssetStore, item_folder

logger = logging.getLogger(__name__)

PENDING_DIR = ".pending"


def open_source(path: Path) -> rasterio.DatasetReader:
    """Open an input raster, or say exactly why it cannot be."""
    if not path.is_file():
        raise SourceNotFound(f"{path}: no such file on the ingest server")
    try:
        return rasterio.open(path)
    except RasterioError as exc:
        raise SourceUnreadable(f"{path.name}: not a readable raster ({exc})") from exc


class Staging:
    """The files of one new version of an item: written beside the current ones in a local
    store, or in a scratch directory and uploaded just before the item is published in S3."""

    def __init__(self, settings: Settings, collection: str, item_id: str) -> None:
        self.settings = settings
        self.store = settings.store()
        self.collection = collection
        self.item_id = item_id
        self.version = uuid.uuid4().hex[:8]
        self.folder = item_folder(collection, item_id)
        local = self.store.local_dir(self.folder)
        self.scratch = local is None
        self.item_dir = local or scratch_root(settings.work_dir) / (
            f"{scratch_prefix('stage')}{self.version}"
        )
        self.written: list[Path] = []
        self.marker = f"{PENDING_DIR}/{self.version}.json"

    def path(self, suffix: str, key: str | None = None) -> Path:
        """A new versioned file name in the item's directory (`<id>_<version>[_<key>]<suffix>`)."""
        name = f"{self.item_id}_{self.version}{f'_{key}' if key else ''}{suffix}"
        path = self.item_dir / name
        self.written.append(path)
        return path

    def open(self) -> None:
        """Record that this version is in progress (the marker), then create its directory."""
        self.store.put_bytes(
            self.marker,
            json.dumps(
                {
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "collection": self.collection,
                    "item_id": self.item_id,
                    "version": self.version,
                }
            ).encode(),
        )
        self.item_dir.mkdir(parents=True, exist_ok=True)

    def upload(self) -> dict[str, str]:
        """Put the version's files in the store; return their hrefs by local path."""
        hrefs: dict[str, str] = {}
        for path in self.written:
            key = f"{self.folder}/{path.name}"
            self.store.put_file(path, key)
            hrefs[str(path)] = self.store.href(key)
        return hrefs

    def discard(self) -> None:
        """Remove everything this version wrote, here and in the store."""
        _remove_version(self.store, self.folder, self.version, keep=set())
        self.close()

    def close(self) -> None:
        """The version is published (or discarded): forget the marker and the scratch files."""
        if self.scratch:
            shutil.rmtree(self.item_dir, ignore_errors=True)
        self.store.delete([self.marker])


@contextmanager
def staging(settings: Settings, collection: str, item_id: str) -> Iterator[Staging]:
    """A Staging whose files are removed unless `publish` committed them."""
    stage = Staging(settings, collection, item_id)
    stage.open()
    try:
        yield stage
    except BaseException:
        stage.discard()
        raise
    stage.close()


def with_hrefs(item: dict[str, Any], hrefs: dict[str, str]) -> dict[str, Any]:
    """The item with its assets pointing where `hrefs` says their files now are (in place)."""
    for asset in item.get("assets", {}).values():
        asset["href"] = hrefs.get(asset["href"], asset["href"])
    return item


def publish(
    conn: psycopg.Connection,
    stage: Staging,
    item: dict[str, Any],
    collection_template: dict[str, Any] | None = None,
) -> bool:
    """Describe the files (size, checksum), put them in the store, upsert the item in one
    transaction with the deletion of the files of the version it replaced (csdr_ingest.replaced:
    after a grace period; those already due are deleted now, unless the caller holds a
    transaction: then the next publish or the service's sweep does it). For a queued job the
    same transaction records the item on the job (csdr_ingest.claims); False, and this
    version's files removed, when an earlier attempt of the job published the item already."""
    describe_files(item, stage.written)
    hrefs = stage.upload()
    with_hrefs(item, hrefs)

    def write() -> bool:
        with conn.transaction():
            pgstac.lock_collection(conn, stage.collection)
            if not claims.record(conn, stage.collection, stage.item_id):
                return False
            replaced = pgstac.asset_hrefs(conn, stage.collection, stage.item_id)
            pgstac.publish_item(conn, item, stage.settings.collection_license, collection_template)
            replaced_files.schedule(
                conn,
                stage.collection,
                stage.item_id,
                replaced - set(hrefs.values()),
                stage.settings.replaced_grace_s,
            )
            return True

    if not run_again_on_conflict(write, f"publishing {stage.collection}/{stage.item_id}"):
        logger.info(
            "%s/%s: published by an earlier attempt of this job; kept as it is",
            stage.collection,
            stage.item_id,
        )
        stage.discard()
        return False
    if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        # Inside a caller's transaction nothing is deleted: it may still roll back.
        replaced_files.delete_due(conn, stage.store)
    return True


def remove_abandoned(conn: psycopg.Connection, settings: Settings) -> int:
    """Delete files (local or in the bucket) of versions whose writer on this host died, and
    the unpacked packages and scratch files of dead processes; return how many were removed."""
    store = settings.store()
    host, count = socket.gethostname(), 0
    for marker in store.keys(PENDING_DIR):
        try:
            info = json.loads(store.get_bytes(marker) or b"")
        except ValueError:
            continue
        if not isinstance(info, dict) or info.get("host") != host:
            continue
        if process_alive(int(info["pid"])):
            continue
        # A version committed just before its writer died is the item's: keep its files.
        keep = pgstac.asset_hrefs(conn, info["collection"], info["item_id"])
        folder = item_folder(info["collection"], info["item_id"])
        _remove_version(store, folder, info["version"], keep)
        store.delete([marker])
        count += 1
    return count + remove_abandoned_scratch(settings.work_dir, process_alive)


def process_alive(pid: int) -> bool:
    """True while process `pid` of this host runs."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_version(store: AssetStore, folder: str, version: str, keep: set[str]) -> None:
    """Delete one version's files (and temporaries) from an item's folder, except `keep`."""
    store.delete(
        key
        for key in store.keys(folder)
        if f"_{version}" in key.rpartition("/")[2] and store.href(key) not in keep
    )


def ingest_file(
    path: Path,
    conn: psycopg.Connection,
    settings: Settings,
    collection: str | None = None,
    when: datetime | None = None,
) -> dict[str, Any]:
    """Publish one georeferenced raster as a STAC item in pgSTAC; return the item. Into a
    `-dem`/`-dsm` collection it goes as an elevation model (csdr_ingest.elevation)."""
    collection = collection or settings.default_collection
    kind = elevation_kind(collection)
    with open_source(path) as src:
        if src.crs is None:
            raise NotGeoreferenced(
                f"{path.name}: the raster has no CRS or geotransform; sensor-geometry scenes need "
                "their RPC sidecar and are ingested as CRESDA packages"
            )
        if kind is not None:
            check_elevation(src, path.name, collection)
        item_id = item_id_for(path)
        acquired = acquisition_time(src, when)
        with staging(settings, collection, item_id) as stage:
            cog, thumb = stage.path(".tif"), stage.path(".png")
            try:
                write_cog(src, cog, settings.compression, settings.blocksize)
            except RasterioError as exc:
                raise SourceUnreadable(f"{path.name}: reading the raster failed ({exc})") from exc
            with rasterio.open(cog) as published:
                write_thumbnail(published, thumb)
            item = build_item(cog, thumb, item_id, collection, acquired).to_dict()
            template = None
            if kind is not None:
                item = describe_elevation(item)
                template = elevation_collection(collection, kind, settings.collection_license, item)
            publish(conn, stage, item, template)
    logger.info("published %s/%s from %s", collection, item_id, path)
    return item


def is_package(path: Path) -> bool:
    """True for a package archive, or a folder holding a product XML (`.xml` or `.XML`, as
    HJ-1/CBERS deliver) at its top level."""
    if path.is_dir():
        return any(is_product_metadata(p) for p in path.iterdir() if p.is_file())
    return is_archive(path)


def ingest_path(
    path: Path,
    conn: psycopg.Connection,
    settings: Settings,
    collection: str | None = None,
    when: datetime | None = None,
    accept_sun_disagreement: bool = False,
) -> list[dict[str, Any]]:
    """Publish a scene package (each product in it) or a single GeoTIFF; return the items.

    A package whose times the sun contradicts (cresda/sun.py) is refused, unless
    `accept_sun_disagreement`: then its items say `csdr:time_contradicts_sun`."""
    with rasterio.Env(**settings.gdal_config()):
        if is_package(path):
            return ingest_package(path, conn, settings, collection, accept_sun_disagreement)
        if path.is_dir():
            raise PackageInvalid(
                f"{path.name}: the folder holds no product metadata XML (ProductMetaData,"
                " <root><data> or sensor_corrected_metadata), so it is not a scene package"
            )
        return [ingest_file(path, conn, settings, collection, when)]


def ingest_package(
    path: Path,
    conn: psycopg.Connection,
    settings: Settings,
    collection: str | None = None,
    accept_sun_disagreement: bool = False,
) -> list[dict[str, Any]]:
    """Publish every product of a CRESDA scene package (archive or folder); return the items."""
    with unpacked(path, settings.work_dir) as root:
        products = find_products(root)
        for product in products:
            require_agreement(
                [product.metadata, *(p.metadata for p in product.parts)], accept_sun_disagreement
            )
            check_product(product)
        return [ingest_product(p, conn, settings, collection) for p in products]


def check_product(product: Product) -> None:
    """Fail before writing anything when a part cannot be read or placed on the map."""
    for part in product.parts:
        for raster in part.rasters:
            with open_source(raster) as src:
                if part.layout == BANDS:
                    continue  # map-projected band files: stack.check_aligned judges them
                if src.crs is None:
                    check_rpcs(part, raster, src)
                size = (part.metadata.width, part.metadata.height)
                if part.layout == SINGLE and None not in size and size != (src.width, src.height):
                    raise PackageInvalid(
                        f"{raster.name} is {src.width} x {src.height} pixels but"
                        f" {part.metadata.source.name} describes {size[0]} x {size[1]}"
                    )


def check_rpcs(part: Part, raster: Path, src: rasterio.DatasetReader) -> None:
    """A sensor-geometry image needs a readable RPC file beside it."""
    sidecar = part.rpc_sidecar(raster)
    if sidecar.name.endswith("_rpc.txt") and sidecar.is_file():
        read_rpc_txt(sidecar)  # GDAL skips a damaged one silently: refuse it by name
    if src.rpcs:
        return
    if sidecar.is_file():
        raise PackageInvalid(
            f"{sidecar.name}: GDAL reads no RPC model from this file, so {raster.name}"
            " (sensor geometry, no CRS) cannot be placed on the map"
        )
    raise RpcMissing(
        f"{raster.name} is in sensor geometry (no CRS) and its RPC file"
        f" {sidecar.name} is missing from the package"
    )


@contextmanager
def part_image(
    part: Part, settings: Settings, dem: Path | None = None
) -> Iterator[rasterio.DatasetReader]:
    """A part's image on the map, ready for the COG writer: one image orthorectified (on the
    heights of `dem`, else the RPB's mean height) when in sensor geometry, segments
    orthorectified into one mosaic, band files stacked."""
    if part.layout == BANDS:
        with stacked(part.rasters, settings.work_dir) as stack:
            yield stack
        return
    with ExitStack() as opened:
        sources = [opened.enter_context(open_source(r)) for r in part.rasters]
        if part.layout == SEGMENTS:
            with orthomosaic(sources, part.metadata, dem, settings.work_dir) as mosaic:
                yield mosaic
            return
        [src] = sources
        if src.crs is not None:
            # Map-projected already: straight to the COG, with the fill around the swath as nodata.
            with stacked([part.raster], settings.work_dir) as projected:
                yield projected
            return
        with georeferenced(
            src, part.rpc_sidecar(part.raster), dem, part.metadata.gsd, settings.work_dir
        ) as geo:
            yield geo


def ingest_product(
    product: Product, conn: psycopg.Connection, settings: Settings, collection: str | None
) -> dict[str, Any]:
    """Orthorectify each part into a COG, describe them in one item, publish it."""
    meta = product.metadata
    cid = collection or collection_id(meta.satellite, meta.sensor)
    item_id = product_item_id(meta)
    with staging(settings, cid, item_id) as stage, scene_dem(conn, settings, product) as dem:
        cogs: dict[str, Path] = {}
        for part in product.parts:
            cogs[part.key] = stage.path(".tif", part.key)
            try:
                with part_image(part, settings, dem) as image:
                    write_cog(image, cogs[part.key], settings.compression, settings.blocksize)
            except RasterioError as exc:
                names = ", ".join(r.name for r in part.rasters)
                raise SourceUnreadable(f"{names}: reading the image failed ({exc})") from exc
        copies = {"metadata": stage.path(".xml", "metadata")}
        shutil.copyfile(meta.source, copies["metadata"])
        if product.browse is not None:
            copies["overview"] = stage.path(".jpg", "overview")
            shutil.copyfile(product.browse, copies["overview"])
        if product.thumbnail is not None:  # the delivered thumbnail (LASAC `_ico.jpg`)
            thumb = stage.path(".jpg", "thumbnail")
            shutil.copyfile(product.thumbnail, thumb)
        else:
            thumb = stage.path(".png")
            render_thumbnail(cogs[product.parts[0].key], product.parts[0].metadata, thumb)
        item = build_product_item(product, item_id, cid, cogs, thumb, copies)
        template = collection_for(
            meta.satellite,
            meta.sensor,
            {p.key: bands_for(p.metadata) for p in product.parts},
            [p.metadata.gsd for p in product.parts],
            settings,
            {name: p.render() for name, p in derive_presets(item["assets"]).items()},
            "image/png" if thumb.suffix == ".png" else "image/jpeg",
        )
        template["id"] = cid
        publish(conn, stage, item, template)
    logger.info("published %s/%s from package %s", cid, item_id, meta.source.parent.name)
    return item


def render_thumbnail(cog: Path, meta: ProductMetadata, thumb: Path) -> None:
    """A PNG thumbnail of a published COG: true colour when it has red, green and blue."""
    with rasterio.open(cog) as published:
        names = [b.common_name for b in bands_for(meta, published.count)]
        rgb = [1]
        if {"red", "green", "blue"} <= set(names):
            rgb = [names.index(c) + 1 for c in ("red", "green", "blue")]
        write_thumbnail(published, thumb, rgb)
