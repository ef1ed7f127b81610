"""A small GF-2 catalog written with pgSTAC's own functions: one collection (eo and projection
extensions) and three scenes over Hebei and Beijing, for the stac-api-validator run and the
catalog's read-only tests."""

import psycopg
from psycopg.types.json import Jsonb

from tests.support.items import COG, cog, stac_item

COLLECTION_ID = "gf2-pms-l1a"
EO = "https://stac-extensions.github.io/eo/v2.0.0/schema.json"
PROJ = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
# GF-2 PMS multispectral bands (centre wavelengths in micrometres).
BANDS = [
    {"name": "b1", "eo:common_name": "blue", "eo:center_wavelength": 0.514},
    {"name": "b2", "eo:common_name": "green", "eo:center_wavelength": 0.546},
    {"name": "b3", "eo:common_name": "red", "eo:center_wavelength": 0.656},
    {"name": "b4", "eo:common_name": "nir", "eo:center_wavelength": 0.822},
]
# Scenes over Hebei and Beijing: (id, UTC time, west, south, cloud cover %).
SCENES = [
    ("GF2_PMS1_E116.3_N39.9_20240512_L1A0008012345", "2024-05-12T03:21:45Z", 116.1, 39.7, 4.0),
    ("GF2_PMS2_E116.8_N39.9_20240512_L1A0008012346", "2024-05-12T03:21:50Z", 116.6, 39.7, 18.5),
    ("GF2_PMS1_E115.9_N38.9_20240620_L1A0008098765", "2024-06-20T03:05:12Z", 115.7, 38.7, 61.0),
]
SIZE_DEG = 0.4


def collection() -> dict:
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "stac_extensions": [EO, PROJ],
        "id": COLLECTION_ID,
        "title": "Gaofen-2 PMS multispectral, L1A",
        "description": "Gaofen-2 panchromatic and multispectral camera scenes (3.2 m, 4 bands) "
        "as Cloud-Optimized GeoTIFFs.",
        "keywords": ["Gaofen-2", "GF-2", "PMS", "multispectral", "China"],
        "license": "other",
        "providers": [
            {"name": "CRESDA", "roles": ["producer", "licensor"], "url": "https://www.cresda.cn"},
            {"name": "CSDR Node", "roles": ["host", "processor"]},
        ],
        "extent": {
            "spatial": {"bbox": [[115.7, 38.7, 117.0, 40.1]]},
            "temporal": {"interval": [["2024-05-12T03:21:45Z", "2024-06-20T03:05:12Z"]]},
        },
        "summaries": {
            "constellation": ["gaofen"],
            "platform": ["gf-2"],
            "instruments": ["pms"],
            "gsd": [3.2],
            "eo:cloud_cover": {"minimum": 0, "maximum": 100},
            "proj:code": ["EPSG:32650"],
            "bands": BANDS,
        },
        "item_assets": {
            "data": {"type": COG, "roles": ["data"], "title": "Cloud-Optimized GeoTIFF"},
            "thumbnail": {"type": "image/png", "roles": ["thumbnail"], "title": "Thumbnail"},
        },
        "links": [],
    }


def item(item_id: str, when: str, west: float, south: float, cloud_cover: float) -> dict:
    bbox = (west, south, round(west + SIZE_DEG, 6), round(south + SIZE_DEG, 6))
    # Asset hrefs are file paths, as ingest writes them: the asset checks stay on this machine.
    assets_dir = f"/srv/csdr/assets/{COLLECTION_ID}/{item_id}"
    properties = {
        "datetime": when,
        "created": "2024-07-01T08:00:00Z",
        "updated": "2024-07-01T08:00:00Z",
        "constellation": "gaofen",
        "platform": "gf-2",
        "instruments": ["pms"],
        "gsd": 3.2,
        "eo:cloud_cover": cloud_cover,
        "proj:code": "EPSG:32650",
        "proj:shape": [13900, 10800],
    }
    assets = {
        "data": {
            **cog(f"{assets_dir}/{item_id}.tif"),
            "title": "Cloud-Optimized GeoTIFF",
            "bands": BANDS,
        },
        "thumbnail": {
            "href": f"{assets_dir}/{item_id}.png",
            "type": "image/png",
            "roles": ["thumbnail"],
            "title": "Thumbnail",
        },
    }
    return {
        **stac_item(item_id, COLLECTION_ID, bbox, properties, assets),
        "stac_extensions": [EO, PROJ],
    }


def load_catalog(database: dict[str, str]) -> None:
    """Write the collection and its items with pgSTAC's own functions."""
    with psycopg.connect(
        host=database["PGHOST"],
        port=database["PGPORT"],
        user=database["PGUSER"],
        password=database["PGPASSWORD"],
        dbname=database["PGDATABASE"],
        options="-c search_path=pgstac,public",
        autocommit=True,
    ) as conn:
        conn.execute("SELECT pgstac.create_collection(%s::jsonb)", (Jsonb(collection()),))
        conn.execute("SELECT pgstac.create_items(%s::jsonb)", (Jsonb([item(*s) for s in SCENES]),))
