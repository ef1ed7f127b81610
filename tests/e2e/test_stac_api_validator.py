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
from tests.support.gf2_catalog import COLLECTION_ID, EO, PROJ, SCENES, SIZE_DEG, item, load_catalog

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
