"""CEOS OpenSearch as FedEO-style clients and GEO DAB use it: the description's templates filled
in, collections by keyword, then the granules of one collection by box and time, which are the
STAC API's items (same ids, same total)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from lxml import etree
from psycopg.types.json import Jsonb

from conftest import free_port
from csdr_discovery.app import create_app
from services.discovery.tests.conftest import COLLECTIONS, HIDDEN, conninfo, settings
from tests.support.items import cog, square, stac_item

OS = "{http://a9.com/-/spec/opensearch/1.1/}"
ATOM = "{http://www.w3.org/2005/Atom}"
DC = "{http://purl.org/dc/elements/1.1/}"
GEORSS = "{http://www.georss.org/georss}"
PARENT = COLLECTIONS[0]["id"]


def scene(n: int) -> dict[str, Any]:
    """The n-th scene of PARENT: a 1-degree square on a line, one a day from 2024-03-01."""
    properties = {"datetime": f"2024-03-{n + 1:02d}T03:00:00Z", "platform": "GF-1"}
    assets = {
        "data": cog(f"https://data.example/{n}.tif"),
        "thumbnail": {
            "href": f"https://data.example/{n}.png",
            "roles": ["thumbnail"],
            "type": "image/png",
        },
    }
    bbox = square(100 + n, 30 + (n % 3), 1)
    return stac_item(f"scene-{n:02d}", PARENT, bbox, properties, assets)


@pytest.fixture(scope="module", autouse=True)
def scenes(discovery_db: dict[str, str]) -> Iterator[None]:
    with psycopg.connect(conninfo(discovery_db), autocommit=True) as conn:
        conn.execute("SELECT pgstac.create_items(%s)", (Jsonb([scene(n) for n in range(25)]),))
    yield


def fill(template: str, values: dict[str, str]) -> str:
    """What an OpenSearch client does: each {name} or {name?} replaced by its value, an
    optional one without a value by nothing."""

    def one(match: re.Match[str]) -> str:
        name, optional = match.group(1), match.group(2) == "?"
        if name in values:
            return quote(values[name], safe="")
        assert optional, f"required parameter {name} has no value"
        return ""

    return re.sub(r"\{([^}?]+)(\??)\}", one, template)


def url_template(osdd: bytes, kind: str) -> str:
    root = etree.fromstring(osdd)
    (url,) = [u for u in root.findall(f"{OS}Url") if u.get("type") == kind]
    return url.get("template")


def test_description_has_the_required_parameters(discovery_url: str) -> None:
    r = httpx.get(f"{discovery_url}/opensearch")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/opensearchdescription+xml")
    root = etree.fromstring(r.content)
    assert root.findtext(f"{OS}Tags") == "CEOS-OS-BP-V1.1/L1"
    assert root.find(f"{OS}Query[@role='example']") is not None
    for kind in ("application/atom+xml", "application/geo+json"):
        (url,) = [u for u in root.findall(f"{OS}Url") if u.get("type") == kind]
        assert url.get("indexOffset") == "1"
        template = url.get("template")
        for param in (
            "{searchTerms?}",
            "{geo:box?}",
            "{time:start?}",
            "{time:end?}",
            "{geo:uid?}",
            "{startIndex?}",
            "{count?}",
        ):
            assert param in template, (kind, param)


def test_collections_by_keyword_then_granules_by_box_and_time(
    discovery_url: str, catalog: TestClient
) -> None:
    osdd = httpx.get(f"{discovery_url}/opensearch").content
    feed_url = fill(
        url_template(osdd, "application/atom+xml"), {"searchTerms": "optical", "count": "50"}
    )
    r = httpx.get(feed_url)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/atom+xml")
    feed = etree.fromstring(r.content)
    assert {
        "http://www.w3.org/2005/Atom",
        "http://a9.com/-/spec/opensearch/1.1/",
        "http://purl.org/dc/elements/1.1/",
        "http://www.georss.org/georss",
        "http://a9.com/-/opensearch/extensions/geo/1.0/",
        "http://a9.com/-/opensearch/extensions/time/1.0/",
        "http://a9.com/-/opensearch/extensions/eo/1.0/",
    } <= set(feed.nsmap.values())
    ids = {e.findtext(f"{DC}identifier") for e in feed.findall(f"{ATOM}entry")}
    expected = {
        c["id"]
        for c in catalog.get("/collections", params={"q": "optical", "limit": 50}).json()[
            "collections"
        ]
    }
    assert ids == expected and PARENT in ids
    assert int(feed.findtext(f"{OS}totalResults")) == len(expected)
    assert not ids & set(HIDDEN)

    # Step two: the collection entry's rel=search description, then its granule template.
    (entry,) = [e for e in feed.findall(f"{ATOM}entry") if e.findtext(f"{DC}identifier") == PARENT]
    (search,) = entry.findall(f"{ATOM}link[@rel='search']")
    assert search.get("type") == "application/opensearchdescription+xml"
    granule_osdd = httpx.get(search.get("href")).content
    template = url_template(granule_osdd, "application/atom+xml")
    assert "{searchTerms?}" in template  # DAB drops keyword queries without it
    box, start, end = "103.5,29,112.5,34", "2024-03-03", "2024-03-20T23:59:59Z"
    stac = catalog.get(
        "/search",
        params={
            "collections": PARENT,
            "bbox": box,
            "datetime": "2024-03-03T00:00:00Z/" + end,
            "limit": 100,
            "count": "true",
        },
    ).json()
    stac_ids = [f["id"] for f in stac["features"]]
    assert 0 < len(stac_ids) < 25

    got: list[str] = []
    index = 1
    while True:
        r = httpx.get(
            fill(
                template,
                {
                    "geo:box": box,
                    "time:start": start,
                    "time:end": end,
                    "startIndex": str(index),
                    "count": "4",
                },
            )
        )
        assert r.status_code == 200, r.text
        page = etree.fromstring(r.content)
        assert int(page.findtext(f"{OS}totalResults")) == stac["numberMatched"]
        entries = page.findall(f"{ATOM}entry")
        got += [e.findtext(f"{DC}identifier") for e in entries]
        for e in entries:
            assert e.findtext(f"{GEORSS}box") and e.findtext(f"{GEORSS}polygon")
            start_end = e.findtext(f"{DC}date").split("/")
            assert len(start_end) == 2 and start_end[0].startswith("2024-03-")
            rels = {link.get("rel"): link for link in e.findall(f"{ATOM}link")}
            assert rels["enclosure"].get("type").startswith("image/tiff")
            assert rels["icon"].get("href").endswith(".png")
            assert rels["alternate"].get("type") == "application/geo+json"
            # Asked at its internal address, the catalog still links its public one.
            assert rels["alternate"].get("href").startswith("https://node.example/collections/")
        nxt = page.find(f"{ATOM}link[@rel='next']")
        if nxt is None:
            break
        index += 4
        assert f"startIndex={index}" in nxt.get("href")
    assert got == stac_ids


def test_count_zero_answers_totals_and_empty_parameters_are_absent(discovery_url: str) -> None:
    base = f"{discovery_url}/opensearch/granules.atom?parentIdentifier={PARENT}"
    r = httpx.get(f"{base}&count=0&q=&bbox=&start=&end=&uid=&startIndex=")
    assert r.status_code == 200, r.text
    feed = etree.fromstring(r.content)
    assert int(feed.findtext(f"{OS}totalResults")) == 25
    assert feed.findall(f"{ATOM}entry") == []


def test_geojson_granules(discovery_url: str) -> None:
    r = httpx.get(
        f"{discovery_url}/opensearch/granules.json",
        params={"parentIdentifier": PARENT, "uid": "scene-07"},
    )
    assert r.status_code == 200
    body = r.json()
    assert body["totalResults"] == 1
    assert [f["id"] for f in body["features"]] == ["scene-07"]


@pytest.mark.parametrize(
    "path",
    [
        "/opensearch/granules.atom",  # no parentIdentifier
        f"/opensearch/granules.atom?parentIdentifier={PARENT}&bbox=1,2,3",
        f"/opensearch/granules.atom?parentIdentifier={PARENT}&start=yesterday",
        "/opensearch/collections.atom?count=1000",
        "/opensearch/collections.atom?startIndex=0",
    ],
)
def test_bad_parameters_answer_400(discovery_url: str, path: str) -> None:
    r = httpx.get(f"{discovery_url}{path}")
    assert r.status_code == 400
    assert r.json()["code"] == "InvalidParameterValue"


def test_hidden_collections_have_no_granule_search(discovery_url: str) -> None:
    r = httpx.get(f"{discovery_url}/opensearch", params={"parentIdentifier": HIDDEN[0]})
    assert r.status_code == 404
    r = httpx.get(
        f"{discovery_url}/opensearch/granules.atom", params={"parentIdentifier": HIDDEN[1]}
    )
    assert r.status_code == 404


def test_atom_escapes_what_items_hold(discovery_url: str, discovery_db: dict[str, str]) -> None:
    other = COLLECTIONS[1]["id"]
    item = {**scene(0), "id": "odd & <scene>", "collection": other}
    item["properties"] = {**item["properties"], "title": "A \"quoted\" <b>title</b> & 'more'\x07"}
    item["assets"]["data"]["href"] = "https://data.example/get?a=1&b=<2>"
    with psycopg.connect(conninfo(discovery_db), autocommit=True) as conn:
        conn.execute("SELECT pgstac.create_item(%s)", (Jsonb(item),))
    r = httpx.get(
        f"{discovery_url}/opensearch/granules.atom",
        params={"parentIdentifier": other, "uid": item["id"], "q": "<&>"},
    )
    assert r.status_code == 200, r.text
    feed = etree.fromstring(r.content)  # well-formed XML whatever the item held
    (entry,) = feed.findall(f"{ATOM}entry")
    assert entry.findtext(f"{DC}identifier") == "odd & <scene>"
    assert entry.findtext(f"{ATOM}title") == "A \"quoted\" <b>title</b> & 'more'"  # no \x07
    (enclosure,) = entry.findall(f"{ATOM}link[@rel='enclosure']")
    assert enclosure.get("href") == "https://data.example/get?a=1&b=<2>"
    query = feed.find(f"{OS}Query")
    assert query.get("searchTerms") == "<&>" and query.get("role") == "request"


def test_collections_by_uid_and_paging_links(discovery_url: str) -> None:
    wanted = COLLECTIONS[4]["id"]
    r = httpx.get(f"{discovery_url}/opensearch/collections.atom", params={"uid": wanted})
    feed = etree.fromstring(r.content)
    assert [e.findtext(f"{DC}identifier") for e in feed.findall(f"{ATOM}entry")] == [wanted]

    r = httpx.get(
        f"{discovery_url}/opensearch/collections.atom", params={"startIndex": 6, "count": 5}
    )
    feed = etree.fromstring(r.content)
    total = int(feed.findtext(f"{OS}totalResults"))
    assert total == len(COLLECTIONS) and len(feed.findall(f"{ATOM}entry")) == 5
    links = {link.get("rel"): link.get("href") for link in feed.findall(f"{ATOM}link")}
    starts = {rel: int(href.rsplit("startIndex=", 1)[1]) for rel, href in links.items()}
    last = ((total - 1) // 5) * 5 + 1
    assert starts == {"self": 6, "first": 1, "previous": 1, "next": 11, "last": last}


def test_a_catalog_that_does_not_answer_is_503(discovery_db: dict[str, str]) -> None:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in discovery_db.items():
            mp.setenv(key, value)
        dead = f"http://127.0.0.1:{free_port()}"
        with TestClient(create_app(settings("http://disc.example", dead))) as client:
            r = client.get("/opensearch/granules.atom", params={"parentIdentifier": PARENT})
    assert r.status_code == 503
    assert r.json()["code"] == "ServiceUnavailable" and r.headers["retry-after"]
