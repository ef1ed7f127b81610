"""stac-api-validator passes our catalog, run as a real process over pgSTAC, for every class the
validator knows that the landing page advertises: core, collections, features, item-search,
filter, and the sort, fields and query extensions of item-search and features; and, with
transactions enabled, the Transaction extension."""

import json
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from conftest import free_port
from tests.e2e import catalog_scenes
from tests.e2e.processes import service
from tests.e2e.stac_validator import run_validator

COLLECTION_ID = "gf2-pms-l1a"
EO = "https://stac-extensions.github.io/eo/v2.0.0/schema.json"
PROJ = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
COG = "image/tiff; application=geotiff; profile=cloud-optimized"
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
CONFORMANCE = [
    "core",
    "collections",
    "features",
    "item-search",
    "filter",
    "item-search#sort",
    "item-search#fields",
    "item-search#query",
    "features#sort",
    "features#fields",
    "features#query",
]
# Values the Fields and Query checks search with, chosen from SCENES.
VALIDATOR_OPTIONS = [
    *("--fields-nested-property", "properties.eo:cloud_cover"),
    *("--query-comparison-field", "eo:cloud_cover"),
    *("--query-eq-value", "4", "--query-neq-value", "4"),
    *("--query-lt-value", "20", "--query-lte-value", "18.5"),
    *("--query-gt-value", "5", "--query-gte-value", "18.5"),
    *("--query-substring-field", "platform"),
    *("--query-starts-with-value", "gf-"),
    *("--query-ends-with-value", "-2"),
    *("--query-contains-value", "f-"),
    *("--query-in-field", "instruments", "--query-in-values", "pms,wfv"),
]
EXPECTED_SECTIONS = [
    "Validating STAC API - Core conformance class.",
    "Validating STAC API - Collections conformance class.",
    "Validating STAC API - Features conformance class.",
    "Validating STAC API - Item Search conformance class.",
    "Validating STAC API - Item Search - Filter Extension conformance class.",
    "Validating STAC API - Collection Search conformance class.",
    "Validating STAC API - Free-text search conformance class.",
    "Validating STAC API - Aggregation conformance class.",
    f"served from the offline schema mirror: {EO}",
    f"served from the offline schema mirror: {PROJ}",
]


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
    east, north = round(west + SIZE_DEG, 6), round(south + SIZE_DEG, 6)
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    # Asset hrefs are file paths, as ingest writes them: the asset checks stay on this machine.
    assets_dir = f"/srv/csdr/assets/{COLLECTION_ID}/{item_id}"
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [EO, PROJ],
        "id": item_id,
        "collection": COLLECTION_ID,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": [west, south, east, north],
        "properties": {
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
        },
        "assets": {
            "data": {
                "href": f"{assets_dir}/{item_id}.tif",
                "type": COG,
                "roles": ["data"],
                "title": "Cloud-Optimized GeoTIFF",
                "bands": BANDS,
            },
            "thumbnail": {
                "href": f"{assets_dir}/{item_id}.png",
                "type": "image/png",
                "roles": ["thumbnail"],
                "title": "Thumbnail",
            },
        },
        "links": [],
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


@pytest.mark.slow
def test_catalog_passes_stac_api_validator(database: dict[str, str], tmp_path: Path) -> None:
    load_catalog(database)
    west, south = SCENES[0][2], SCENES[0][3]
    geometry = {"type": "Point", "coordinates": [west + SIZE_DEG / 2, south + SIZE_DEG / 2]}
    with service("csdr_catalog.app:create_app", free_port(), database, tmp_path) as url:
        output = run_validator(
            ["--root-url", url, "--collection", COLLECTION_ID, "--geometry", json.dumps(geometry)]
            + [arg for name in CONFORMANCE for arg in ("--conformance", name)]
            + VALIDATOR_OPTIONS
        )
    missing = [line for line in EXPECTED_SECTIONS if line not in output]
    assert not missing and "Errors: none" in output, f"missing {missing}; output:\n{output}"


# The item stac-api-validator's Transaction check writes, rewrites, patches and deletes.
VALIDATOR_TXN_ITEM = "S2A_47XNF_20230423_0_L2A"


@pytest.mark.slow
def test_transactions_pass_stac_api_validator(database: dict[str, str], tmp_path: Path) -> None:
    """With transactions enabled, the Transaction class passes too, written with an ingest key.

    The validator starts by deleting its item "if it exists" but asserts 204 on that DELETE; a
    missing item answers 404 here (OGC API Features Part 4), so the item exists beforehand."""
    from csdr_access.admin import add_org, issue_key

    load_catalog(database)
    with psycopg.connect(catalog_scenes.conninfo(database), autocommit=True) as conn:
        add_org(conn, "Writers", "CN", "main", "test")
        key = issue_key(conn, "Writers", ["ingest"], "test")[0]
        existing = item(VALIDATOR_TXN_ITEM, "2023-04-23T06:47:03Z", 99.0, 76.5, 0.1)
        conn.execute("SELECT pgstac.create_item(%s::jsonb)", (Jsonb(existing),))
    env = {**database, "CSDR_CATALOG_TRANSACTIONS": "true"}
    with service("csdr_catalog.app:create_app", free_port(), env, tmp_path) as url:
        output = run_validator(
            ["--root-url", url, "--collection", COLLECTION_ID]
            + ["--conformance", "core", "--conformance", "transaction"]
            + ["--transaction-collection", COLLECTION_ID, "--auth-bearer-token", key]
        )
    assert "Transaction extension conformance class found" in output, output
    assert "Errors: none" in output, output
