"""What the node takes from upstream libraries beyond their documented surface (docs/upstream.md),
checked where no behaviour test already breaks on an upgrade that changes it: pgSTAC's internal
SQL functions with the arguments we call them with, stac-fastapi-pgstac's private methods the
catalog's client overrides or calls, rasterio's GDAL type names."""

from __future__ import annotations

import inspect

import psycopg
import pytest
from rasterio.dtypes import _gdal_typename
from stac_fastapi.pgstac.core import CoreCrudClient

from conftest import TEMPLATE_DB

# pgSTAC functions outside its documented API (search, get_item, create_collection, ...) that our
# SQL calls, with the argument types of our calls; `to_regprocedure` finds none when an upgrade
# renames one or changes its arguments.
PGSTAC_INTERNALS = (
    "pgstac.stac_search_to_where(jsonb)",
    "pgstac.where_stats(text, boolean, jsonb)",
    "pgstac.sort_sqlorderby(jsonb, boolean, text[], text[])",
    "pgstac.get_token_filter(jsonb, pgstac.items, boolean, boolean, text[])",
    "pgstac.get_token_record(text)",
    "pgstac.include_field(text, jsonb)",
    "pgstac.context(jsonb)",
    "pgstac.get_setting_bool(text, jsonb)",
    "pgstac.collection_base_item(text, integer)",
    "pgstac.content_hydrate(pgstac.items, jsonb)",
    "pgstac.content_nonhydrated(pgstac.items, jsonb)",
    "pgstac.to_text_array(jsonb)",
    "pgstac.to_float(jsonb)",
    "pgstac.stac_geom(jsonb)",
    "pgstac.collection_search_matched(jsonb)",
    "pgstac.collection_search_rows(jsonb)",
    "pgstac.current_base_item(text)",
    "pgstac.stac_daterange(jsonb)",
    "pgstac.check_partition(text, tstzrange, tstzrange)",
)


def test_pgstac_has_the_internal_functions_we_call(pg_cluster) -> None:
    with psycopg.connect(pg_cluster.conninfo(TEMPLATE_DB)) as conn:
        missing = [
            signature
            for signature in PGSTAC_INTERNALS
            if conn.execute("SELECT to_regprocedure(%s)", (signature,)).fetchone()[0] is None
        ]
        # The check itself can fail: a function that does not exist is not found.
        assert conn.execute("SELECT to_regprocedure('pgstac.search(text)')").fetchone() == (None,)
    assert not missing, f"pgSTAC no longer has {missing}: see docs/upstream.md"


@pytest.mark.parametrize(
    ("method", "parameters"),
    [
        ("_clean_search_args", ["base_args", "filter_query", "filter_lang", "kwargs"]),
        ("_search_base", ["search_request", "request"]),
        ("_get_base_item", ["collection_id", "request"]),
    ],
)
def test_stac_fastapi_pgstac_private_methods_keep_their_parameters(method, parameters) -> None:
    signature = inspect.signature(getattr(CoreCrudClient, method))
    assert set(parameters) <= set(signature.parameters), f"{method}{signature}"


def test_stac_fastapi_pgstac_routes_still_go_through_the_overridden_methods() -> None:
    # csdr_catalog.client overrides _search_base (read by SQL composed from pgSTAC's pieces) and
    # _clean_search_args (CQL2 cache, visible collections); both are only useful while upstream's
    # endpoints call them, and while all_collections hands its keyword arguments on.
    for endpoint in ("get_search", "post_search", "get_item", "item_collection"):
        source = inspect.getsource(getattr(CoreCrudClient, endpoint))
        assert "self._search_base(" in source, endpoint
    for endpoint in ("get_search", "item_collection", "all_collections"):
        assert "self._clean_search_args(" in inspect.getsource(getattr(CoreCrudClient, endpoint))
    assert "**kwargs" in inspect.getsource(CoreCrudClient.all_collections)


def test_rasterio_names_gdal_types_from_the_dtype_names_datasets_report() -> None:
    # csdr_ingest.cresda.stack writes a VRT's dataType from `src.dtypes` (strings).
    names = {name: _gdal_typename(name) for name in ("uint8", "uint16", "int16", "float32")}
    assert names == {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "float32": "Float32"}


def test_pygeometa_still_builds_its_iso19139_template_as_discovery_does() -> None:
    # csdr_discovery.iso19139 builds pygeometa's Jinja2 environment once, with the loader,
    # filters and globals render_j2_template sets up on every call: the same names must exist.
    from pygeometa import core

    source = inspect.getsource(core.render_j2_template)
    for name in (
        "normalize_datestring",
        "get_distribution_language",
        "get_charstring",
        "prune_distribution_formats",
        "prune_transfer_option",
    ):
        assert callable(getattr(core, name)) and name in source, name
    assert core.SCHEMAS.is_dir() and "SCHEMAS" in source and "zip=zip" in source
