"""The STAC item of one CRESDA product: identity and times from the XML, geometry from the
orthorectified pixels, one COG asset per part with bands, statistics and radiance scaling."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import rasterio
from rio_stac.stac import get_projection_info, get_raster_info
from shapely.geometry import Polygon, shape
from shapely.ops import unary_union

from csdr_ingest.cresda.bands import bands_for, calibration_for
from csdr_ingest.cresda.collections import STAC_EXTENSIONS, platform_of
from csdr_ingest.cresda.metadata import ProductMetadata, sensor_family
from csdr_ingest.cresda.products import Product
from csdr_ingest.cresda.sun import check_sun
from csdr_ingest.errors import PackageInvalid
from csdr_ingest.footprint import as_geojson, valid_footprint

COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"


def item_id_for(meta: ProductMetadata) -> str:
    """A stable id from the XML alone: `GF1_WFV3_20200523_L1A0004819525` (UTC date).

    The file name's product number can be wrong (2147483647, an integer overflow, for
    ProductID 12889847001) and its date is the Beijing one, so neither is used."""
    number = meta.product_id.zfill(10) if meta.product_id.isdigit() else meta.product_id
    return f"{meta.satellite}_{meta.sensor}_{meta.center:%Y%m%d}_{meta.level}{number}"


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _properties(meta: ProductMetadata, parts: list[ProductMetadata]) -> dict[str, Any]:
    platform = platform_of(meta.satellite)
    props: dict[str, Any] = {
        "datetime": _iso(meta.center),
        "start_datetime": _iso(min(p.start for p in parts)),
        "end_datetime": _iso(max(p.end for p in parts)),
        "platform": platform.platform,
        "constellation": platform.constellation,
        "instruments": [sensor_family(meta.sensor).lower()],
        "gsd": min(p.gsd for p in parts),
        "processing:level": meta.level,
        "csdr:product_id": meta.product_id,
        "csdr:satellite_id": meta.satellite,
        "csdr:sensor_id": meta.sensor,
    }
    optional = {
        "eo:cloud_cover": meta.cloud_cover,
        "view:sun_elevation": meta.sun_elevation,
        "view:sun_azimuth": meta.sun_azimuth,
        "view:incidence_angle": meta.incidence_angle,
        "view:off_nadir": meta.off_nadir,
        "sat:absolute_orbit": meta.orbit,
        "csdr:scene_id": meta.scene_id,
        "csdr:path": meta.path,
        "csdr:row": meta.row,
    }
    props |= {k: v for k, v in optional.items() if v is not None}
    sun = check_sun(meta)
    if sun is not None:
        props["csdr:computed_sun_elevation"] = round(sun.computed_elevation, 2)
        props["csdr:computed_sun_azimuth"] = round(sun.computed_azimuth, 2)
        if not sun.agrees:  # published only when the operator accepted the disagreement
            props["csdr:time_contradicts_sun"] = True
    for key in ("view:sun_elevation", "view:sun_azimuth", "view:incidence_angle", "view:off_nadir"):
        if key in props:
            props[key] = round(props[key], 6)
    return props


def _extensions(properties: dict[str, Any]) -> list[str]:
    """The extensions an item uses: sat only when the metadata gave an orbit (the real
    CBERS-04 record has none, and the sat schema requires one of its fields)."""
    names = ["eo", "raster", "projection", "view", "sat", "processing"]
    return [n for n in names if n != "sat" or any(k.startswith("sat:") for k in properties)]


def cog_asset(key: str, cog: Path, meta: ProductMetadata) -> tuple[dict[str, Any], Any]:
    """A COG asset: projection, eo:bands and raster:bands (statistics, radiance scale/offset);
    also returns the valid-pixel footprint of the COG."""
    with rasterio.open(cog) as src, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        proj = get_projection_info(src)
        raster_bands = get_raster_info(src, max_size=1024)
        footprint = shape(valid_footprint(src))
        count = src.count
    bands = bands_for(meta, count)
    calibration = calibration_for(
        meta.satellite, meta.sensor, "" if key == "data" else key, meta.center.year
    )
    for i, band in enumerate(raster_bands):
        band.pop("scale", None)
        band.pop("offset", None)
        band.pop("histogram", None)
        if calibration is not None and i < len(calibration.gains):
            band["scale"] = calibration.gains[i]
            band["offset"] = calibration.offsets[i]
            band["unit"] = "W m-2 sr-1 um-1"
    asset: dict[str, Any] = {
        "href": str(cog),
        "type": COG_TYPE,
        "roles": ["data"],
        "title": f"{key.upper()} orthorectified" if key != "data" else "Orthorectified image",
        "gsd": round(abs(proj["transform"][0]), 4),
        "proj:epsg": proj["epsg"],
        "proj:shape": proj["shape"],
        "proj:transform": proj["transform"],
        "proj:bbox": proj["bbox"],
        "eo:bands": [
            {
                "name": b.name,
                "common_name": b.common_name,
                "center_wavelength": b.center_wavelength,
                "full_width_half_max": b.full_width_half_max,
            }
            for b in bands
        ],
        "raster:bands": raster_bands,
    }
    if calibration is not None:
        asset["csdr:calibration_year"] = calibration.year
    return asset, footprint


def build_product_item(
    product: Product,
    item_id: str,
    collection: str,
    cogs: dict[str, Path],
    thumbnail: Path,
    copies: dict[str, Path],
) -> dict[str, Any]:
    """The item for a product whose parts were written as `cogs` (asset key -> COG path);
    `copies` are the shipped files kept as assets (`metadata` XML, `overview` browse JPEG);
    `thumbnail` is a PNG rendered from the COG or the delivered JPEG."""
    assets: dict[str, Any] = {}
    footprints = []
    for part in product.parts:
        asset, footprint = cog_asset(part.key, cogs[part.key], part.metadata)
        assets[part.key] = asset
        footprints.append(footprint)
    return _item(
        product,
        item_id,
        collection,
        unary_union(footprints),
        assets | _shipped(thumbnail, copies),
        "succeeded",
    )


def build_offline_item(
    product: Product,
    item_id: str,
    collection: str,
    thumbnail: Path,
    copies: dict[str, Path],
) -> dict[str, Any]:
    """The item of an archived product not produced yet (`order:status` orderable): the
    footprint its XML's corner coordinates give, the thumbnail, the shipped files, no COG."""
    rings = [p.metadata.corners for p in product.parts if p.metadata.corners is not None]
    if not rings and product.metadata.corners is not None:
        rings = [product.metadata.corners]
    if not rings:
        raise PackageInvalid(
            f"{product.metadata.source.name} gives no corner coordinates: an offline scene"
            " needs them for its footprint"
        )
    geometry = unary_union([Polygon(c.ring()) for c in rings])
    return _item(product, item_id, collection, geometry, _shipped(thumbnail, copies), "orderable")


def _shipped(thumbnail: Path, copies: dict[str, Path]) -> dict[str, Any]:
    """The thumbnail and the shipped files kept as assets (metadata XML, browse JPEG)."""
    delivered = thumbnail.suffix.lower() != ".png"
    assets: dict[str, Any] = {
        "thumbnail": {
            "href": str(thumbnail),
            "type": "image/jpeg" if delivered else "image/png",
            "roles": ["thumbnail"],
            "title": "Thumbnail (as delivered)" if delivered else "Thumbnail",
        }
    }
    if "overview" in copies:
        assets["overview"] = {
            "href": str(copies["overview"]),
            "type": "image/jpeg",
            "roles": ["overview"],
            "title": "Browse image (as delivered)",
        }
    assets["metadata"] = {
        "href": str(copies["metadata"]),
        "type": "application/xml",
        "roles": ["metadata"],
        "title": "CRESDA product metadata (as delivered)",
    }
    return assets


def _item(
    product: Product,
    item_id: str,
    collection: str,
    geometry: Any,
    assets: dict[str, Any],
    order_status: str,
) -> dict[str, Any]:
    """The item of a product: `order:status` (STAC order extension) succeeded when its COGs
    are published, orderable when it is archived and produced on order."""
    now = _iso(datetime.now(UTC))
    properties = _properties(product.metadata, [p.metadata for p in product.parts])
    properties["created"] = properties["updated"] = now
    properties["order:status"] = order_status
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [STAC_EXTENSIONS[e] for e in _extensions(properties)],
        "id": item_id,
        "collection": collection,
        "geometry": as_geojson(geometry),
        "bbox": list(geometry.bounds),
        "properties": properties,
        "assets": assets,
        "links": [],
    }
