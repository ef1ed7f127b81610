"""The heights an RPC orthorectification uses: the elevation items of a DEM collection of this
catalogue that cover the scene (`CSDR_INGEST_DEM_COLLECTION`), else a DEM file
(`CSDR_INGEST_DEM`), else the RPB's mean height (rpc.transformer_options).

GDAL reads the DEM itself (RPC_DEM): one covering COG is handed over as it is; several become a
mosaic VRT of those COGs (no resampling, the finest pixel size) over the area of the scene, which
is the union of its images' RPC validity boxes (offset +- scale in longitude and latitude).
"""

from __future__ import annotations

import logging
import math
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import rasterio
from rasterio.dtypes import _gdal_typename

from csdr_ingest.cresda.products import Product
from csdr_ingest.packages import scratch_prefix
from csdr_ingest.settings import Settings

logger = logging.getLogger(__name__)

Bounds = tuple[float, float, float, float]


def rpc_area(rasters: list[Path]) -> Bounds | None:
    """(west, south, east, north) covering the RPC validity boxes of the sensor-geometry
    images among `rasters`; None when none has RPCs."""
    boxes = []
    for path in rasters:
        with rasterio.open(path) as src:
            if src.crs is None and src.rpcs:
                r = src.rpcs
                boxes.append(
                    (
                        r.long_off - r.long_scale,
                        r.lat_off - r.lat_scale,
                        r.long_off + r.long_scale,
                        r.lat_off + r.lat_scale,
                    )
                )
    if not boxes:
        return None
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def covering_dems(conn: psycopg.Connection, collection: str, area: Bounds) -> list[Path]:
    """The data COGs of the collection's items that intersect `area`, oldest first (a newer
    one is drawn over an older one in the mosaic)."""
    rows = conn.execute(
        "SELECT pgstac.get_item(id, collection)->'assets'->'data'->>'href' FROM pgstac.items"
        " WHERE collection = %s AND ST_Intersects(geometry, ST_MakeEnvelope(%s, %s, %s, %s, 4326))"
        " ORDER BY datetime, id",
        (collection, *area),
    ).fetchall()
    return [Path(href) for (href,) in rows if href]


def mosaic_vrt(dems: list[Path]) -> str:
    """A one-band VRT placing `dems` (one CRS) on the grid of the finest of them, later on top."""
    opened = []
    for path in dems:
        with rasterio.open(path) as src:
            opened.append((path, src.crs, src.transform, src.width, src.height))
            if len(opened) == 1:
                crs, dtype, nodata = src.crs, src.dtypes[0], src.nodata
    same = [o for o in opened if o[1] == crs]
    for o in opened:
        if o[1] != crs:
            logger.warning("DEM %s is not in %s: left out of the mosaic", o[0], crs)
    res = min(abs(o[2].a) for o in same)
    west = min(o[2].c for o in same)
    north = max(o[2].f for o in same)
    east = max(o[2].c + o[3] * o[2].a for o in same)
    south = min(o[2].f + o[4] * o[2].e for o in same)
    width, height = math.ceil((east - west) / res), math.ceil((north - south) / res)
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    ET.SubElement(root, "SRS").text = crs.to_wkt()
    ET.SubElement(root, "GeoTransform").text = f"{west!r}, {res!r}, 0, {north!r}, 0, {-res!r}"
    band = ET.SubElement(root, "VRTRasterBand", dataType=_gdal_typename(dtype), band="1")
    if nodata is not None:
        ET.SubElement(band, "NoDataValue").text = repr(nodata)
    for path, _, t, w, h in same:
        source = ET.SubElement(band, "ComplexSource")
        ET.SubElement(source, "SourceFilename", relativeToVRT="0").text = str(path.resolve())
        ET.SubElement(source, "SourceBand").text = "1"
        ET.SubElement(source, "SrcRect", xOff="0", yOff="0", xSize=str(w), ySize=str(h))
        ET.SubElement(
            source,
            "DstRect",
            xOff=repr((t.c - west) / res),
            yOff=repr((north - t.f) / res),
            xSize=repr(w * abs(t.a) / res),
            ySize=repr(h * abs(t.e) / res),
        )
        if nodata is not None:
            ET.SubElement(source, "NODATA").text = repr(nodata)
    return ET.tostring(root, encoding="unicode")


@contextmanager
def scene_dem(
    conn: psycopg.Connection, settings: Settings, product: Product
) -> Iterator[Path | None]:
    """The DEM GDAL's RPC transformer should read for `product`, or None (the RPB's mean
    height); a mosaic VRT lives in a temporary directory removed on exit."""
    collection = settings.dem_collection
    area = rpc_area([r for part in product.parts for r in part.rasters]) if collection else None
    dems = covering_dems(conn, collection, area) if collection and area else []
    if collection and area and not dems:
        logger.warning("no item of DEM collection %s covers %s: falling back", collection, area)
    if len(dems) <= 1:
        yield dems[0] if dems else settings.dem
        return
    if settings.work_dir is not None:
        settings.work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=scratch_prefix("dem"), dir=settings.work_dir) as tmp:
        path = Path(tmp) / "scene_dem.vrt"
        path.write_text(mosaic_vrt(dems))
        yield path
