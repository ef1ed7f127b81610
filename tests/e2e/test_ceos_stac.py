"""The CEOS STAC best practice's mandatory rules for collection and granule discovery, checked on
what a harvester reads after two CRESDA look-alike packages were ingested: `type` on every link and
asset (REQ-3325), absolute hrefs (REQ-3410/7510), GCMD platform and instrument labels in
`keywords` with platform/instrument summaries (REQ-7220-7240), `numberMatched` and `next` on item
pages (REQ-4635/3280), `start_datetime`/`end_datetime` on every item, right-hand-rule footprints
(REQ-6235), and discovery, thumbnails and quicklooks without a key (REQ-8510)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Node
from tests.fixtures import CRESDA_PMS, CRESDA_WFV
from tests.support.lookalike import write_lookalike

pytestmark = pytest.mark.slow

# GCMD platform and instrument short names the two look-alikes' collections must carry.
EXPECTED = {"gf1-wfv": ("GF-1", "WFV"), "gf1-pms": ("GF-1", "PMS")}


@pytest.fixture(scope="module")
def harvested(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The two packages ingested; then every document a STAC harvester reads, by URL."""
    staging = tmp_path_factory.mktemp("ceos")
    for fixture in (CRESDA_WFV, CRESDA_PMS):
        job = node.run_job(write_lookalike(fixture, staging, max_size=400), None)
        assert job["status"] == "succeeded", job
    documents: dict[str, Any] = {}
    with httpx.Client(timeout=30) as client:

        def read(url: str, **params: str) -> Any:
            r = client.get(url, params=params)
            assert r.status_code == 200, (url, r.text)
            documents[str(r.url)] = body = r.json()
            return body

        read(f"{node.catalog}/")
        for collection in read(f"{node.catalog}/collections")["collections"]:
            read(f"{node.catalog}/collections/{collection['id']}")
            page = read(f"{node.catalog}/collections/{collection['id']}/items", limit="1")
            for item in page["features"]:
                read(f"{node.catalog}/collections/{collection['id']}/items/{item['id']}")
        read(f"{node.catalog}/search", limit="1")
        read(f"{node.catalog}/collections/gf1-wfv/queryables")
    yield documents


def _links_and_assets(doc: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every link and asset object anywhere in a document, with a path naming it."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == "links" and isinstance(value, list):
                for n, link in enumerate(value):
                    yield f"{where}.links[{n}]", link
            elif key in ("assets", "item_assets") and isinstance(value, dict):
                for name, asset in value.items():
                    yield f"{where}.{key}.{name}", asset
            else:
                yield from _links_and_assets(value, f"{where}.{key}")
    elif isinstance(doc, list):
        for n, value in enumerate(doc):
            yield from _links_and_assets(value, f"{where}[{n}]")


def test_every_link_and_asset_has_a_type_and_an_absolute_href(harvested: dict[str, Any]) -> None:
    untyped, relative = [], []
    for url, doc in harvested.items():
        for where, obj in _links_and_assets(doc, url):
            if not obj.get("type"):
                untyped.append((where, obj.get("rel"), obj.get("href")))
            href = obj.get("href")
            if href is not None and not href.startswith(("http://", "https://")):
                relative.append((where, href))
    assert not untyped, untyped
    assert not relative, relative
    assert sum(1 for doc in harvested.values() for _ in _links_and_assets(doc, "")) > 50


def test_collections_carry_gcmd_keywords_and_summaries(harvested: dict[str, Any]) -> None:
    collections = {doc["id"]: doc for doc in harvested.values() if doc.get("type") == "Collection"}
    assert set(EXPECTED) <= set(collections)
    for cid, (platform, instrument) in EXPECTED.items():
        collection = collections[cid]
        assert {platform, instrument} <= set(collection["keywords"]), collection["keywords"]
        assert any(k.startswith("EARTH SCIENCE >") for k in collection["keywords"])
        summaries = collection["summaries"]
        for field in ("platform", "instruments", "constellation", "gsd"):
            assert summaries.get(field), (cid, field)
        assert any("producer" in p["roles"] for p in collection["providers"])
        assert any(link["rel"] == "items" for link in collection["links"])


def _signed_area(ring: list[list[float]]) -> float:
    """Twice the ring's area, positive when it runs counter-clockwise (the shoelace formula)."""
    pairs = zip(ring, ring[1:], strict=False)
    return sum(x0 * y1 - x1 * y0 for (x0, y0, *_), (x1, y1, *_) in pairs)


def test_item_pages_and_items_as_granule_discovery_needs(harvested: dict[str, Any]) -> None:
    pages = [doc for doc in harvested.values() if doc.get("type") == "FeatureCollection"]
    assert pages
    items = [doc for doc in harvested.values() if doc.get("type") == "Feature"]
    for page in pages:
        assert isinstance(page.get("numberMatched"), int)
        assert page["numberReturned"] == len(page["features"])
        if page["numberMatched"] > page["numberReturned"]:
            assert any(link["rel"] == "next" for link in page["links"])
        items += page["features"]
    assert len({item["id"] for item in items}) >= 2
    for item in items:
        props = item["properties"]
        assert props["start_datetime"] <= props["datetime"] <= props["end_datetime"], item["id"]
        polygons = (
            [item["geometry"]["coordinates"]]
            if item["geometry"]["type"] == "Polygon"
            else item["geometry"]["coordinates"]
        )
        for polygon in polygons:
            assert _signed_area(polygon[0]) > 0, f"{item['id']}: exterior ring is clockwise"
            for hole in polygon[1:]:
                assert _signed_area(hole) < 0, f"{item['id']}: a hole is counter-clockwise"


def test_discovery_thumbnails_and_quicklooks_need_no_key(harvested: dict[str, Any]) -> None:
    previews = [
        asset["href"]
        for doc in harvested.values()
        if doc.get("type") == "Feature"
        for asset in doc["assets"].values()
        if {"thumbnail", "overview"} & set(asset.get("roles", []))
    ]
    assert previews
    for href in previews:
        r = httpx.get(href, timeout=30, follow_redirects=True)
        assert r.status_code == 200, (href, r.status_code, r.text[:200])
        assert r.headers["content-type"].startswith("image/"), href
