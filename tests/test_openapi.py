import json

import pytest

from infra.openapi import ROOT, SERVICES, document, render


@pytest.mark.parametrize("service", SERVICES)
def test_committed_openapi_matches_the_code(service):
    committed = (ROOT / "openapi" / f"{service}.json").read_text()
    assert committed == render(document(service)), (
        f"openapi/{service}.json is out of date: run `make openapi` and commit it"
    )


def test_documents_describe_the_routes_users_rely_on():
    paths = {s: json.loads((ROOT / "openapi" / f"{s}.json").read_text())["paths"] for s in SERVICES}
    assert {"/search", "/collections/{collection_id}/items", "/readyz"} <= set(paths["catalog"])
    assert "/collections/{collection_id}/items/{item_id}/WMTSCapabilities.xml" in paths["tiler"]
    assert {"/jobs", "/jobs/{job_id}", "/healthz"} <= set(paths["ingest"])
    assert {"/csw", "/oai", "/opensearch", "/opensearch/granules.{fmt}"} <= set(paths["discovery"])
    assert {"/federation/changes", "/federation/peers", "/readyz"} <= set(paths["federation"])
    assert {"/orders", "/orders/{order_id}/items", "/quota", "/stats/usage"} <= set(paths["orders"])
    assert {"/config.json", "/healthz", "/readyz"} <= set(paths["portal"])
