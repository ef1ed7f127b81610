"""Item links made by concatenation where urljoin would answer the same (features.py)."""

from __future__ import annotations

from urllib.parse import urljoin

import pytest

from csdr_catalog.features import PageFeatures

IDS = [
    "GF2_PMS1_E116.5_N39.9_20240512_L1A0001",
    "高分 测试",
    "a:b;c,d@e!f$g&h'i(j)k*l+m=n",
    "%2F%20encoded",
    "a?b",
    "a#b",
    "a//b",
    ".",
    "..",
    "a/../b",
    "a/./b",
    "trailing/",
    "tab\there",
    "line\nbreak",
    " lead and trail ",
    "None",
]
BASES = [
    "http://127.0.0.1:8081/",
    "https://node.example.org/stac/",
    "http://h/a//b/",
    "http://h/a/../b/",
    "http://h/no-slash",
]


async def no_base_item(collection: str) -> dict:
    raise AssertionError("not needed")


@pytest.mark.parametrize("base", BASES)
def test_links_resolve_exactly_as_urljoin(base):
    page = PageFeatures(base, set(), set(), True, no_base_item)
    for collection in ("gf2-pms-l1a", "c;x", "c/..", "c?"):
        for item_id in IDS:
            path = f"collections/{collection}/items/{item_id}"
            assert page.resolve(path) == urljoin(base, path), (base, path)
            links = page.links(collection, item_id, [{"rel": "license", "href": item_id}])
            assert [link["href"] for link in links] == [
                urljoin(base, f"collections/{collection}"),
                urljoin(base, f"collections/{collection}"),
                base,
                urljoin(base, path),
                urljoin(base, item_id),
            ]
