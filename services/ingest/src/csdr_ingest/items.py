"""STAC items for generic rasters: rio-stac for projection, raster (with statistics) and eo, our
valid-pixel footprint for the geometry, and a thumbnail asset."""

import re
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pystac
import rasterio
from rio_stac import create_stac_item
from shapely.geometry import shape

from csdr_ingest.errors import MissingDatetime
from csdr_ingest.footprint import valid_footprint

# eo:common_name values (STAC eo extension) recognised in band descriptions.
COMMON_NAMES = {
    "coastal",
    "blue",
    "green",
    "red",
    "yellow",
    "pan",
    "rededge",
    "nir",
    "nir08",
    "nir09",
    "cirrus",
    "swir16",
    "swir22",
    "lwir",
    "lwir11",
    "lwir12",
}
# Characters stac-fastapi refuses in ids (its DEFAULT_INVALID_ID_CHARS), and whitespace.
_UNSAFE_ID = re.compile(r"[:/?#\[\]@!$&'()*+,;=\s]+")


def item_id_for(path: Path) -> str:
    """A URL-safe item id from a file name (generic inputs carry no product id)."""
    return _UNSAFE_ID.sub("-", path.stem).strip("-") or "item"


def acquisition_time(src: rasterio.DatasetReader, override: datetime | None) -> datetime:
    """The scene's UTC time: the job's value, else the TIFF's DateTime tag (read as UTC)."""
    if override is not None:
        return override if override.tzinfo else override.replace(tzinfo=UTC)
    tag = src.tags().get("TIFFTAG_DATETIME")
    if tag:
        try:
            return datetime.strptime(tag.strip(), "%Y:%m:%d %H:%M:%S").replace(tzinfo=UTC)
        except ValueError as exc:
            raise MissingDatetime(f"TIFFTAG_DATETIME {tag!r} is not 'YYYY:MM:DD HH:MM:SS'") from exc
    raise MissingDatetime(
        "no acquisition time: the TIFF has no TIFFTAG_DATETIME and the job gave no datetime"
    )


def build_item(
    cog_path: Path, thumbnail_path: Path, item_id: str, collection: str, when: datetime
) -> pystac.Item:
    """The STAC item describing a published COG and its thumbnail."""
    with rasterio.open(cog_path) as src, warnings.catch_warnings():
        # rio-stac tries to parse TIFFTAG_DATETIME itself and warns; we pass the time we parsed.
        warnings.simplefilter("ignore", UserWarning)
        item = create_stac_item(
            src,
            input_datetime=when,
            collection=collection,
            id=item_id,
            asset_name="data",
            asset_roles=["data"],
            asset_href=str(cog_path),
            asset_media_type=pystac.MediaType.COG,
            with_proj=True,
            with_raster=True,
            with_eo=True,
            raster_max_size=1024,
        )
        geometry = valid_footprint(src)
    item.geometry = geometry
    item.bbox = list(shape(geometry).bounds)
    for band in item.assets["data"].extra_fields.get("eo:bands", []):
        name = str(band.get("description", "")).lower()
        if name in COMMON_NAMES:
            band["common_name"] = name
    item.add_asset(
        "thumbnail",
        pystac.Asset(
            href=str(thumbnail_path),
            media_type=pystac.MediaType.PNG,
            roles=["thumbnail"],
            title="Thumbnail",
        ),
    )
    item.properties["created"] = item.properties["updated"] = (
        datetime.now(UTC).isoformat().replace("+00:00", "Z")
    )
    item.properties["order:status"] = "succeeded"  # online (STAC order extension)
    # The acquisition as an interval too (CEOS STAC best practice REC-6220): harvesters such as
    # GEO DAB read an item's time only from start_datetime/end_datetime.
    item.common_metadata.start_datetime = item.common_metadata.end_datetime = item.datetime
    return item
