"""CSW 2.0.2 as GEOSS's DAB and OWSLib use it: capabilities, GetRecords by keyword, box and time
(the same collections as the STAC API's collection search), paging by nextRecord, ISO 19139."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from lxml import etree
from owslib import fes
from owslib.csw import CatalogueServiceWeb
from owslib.iso import MD_Metadata

from csdr_discovery.iso19139 import IsoRecords
from csdr_render.links import collection_map_links
from services.discovery.tests.conftest import COLLECTIONS, HIDDEN, collection, settings

GMD = "http://www.isotc211.org/2005/gmd"
CSW_NS = "http://www.opengis.net/cat/csw/2.0.2"
OWS = "http://www.opengis.net/ows"
TITLE_IS_X = (
    "<ogc:PropertyIsEqualTo><ogc:PropertyName>dc:title</ogc:PropertyName>"
    "<ogc:Literal>x</ogc:Literal></ogc:PropertyIsEqualTo>"
)


@pytest.fixture(scope="module")
def csw(discovery_url: str) -> CatalogueServiceWeb:
    return CatalogueServiceWeb(f"{discovery_url}/csw", timeout=30)


def stac_ids(catalog: TestClient, **params: Any) -> set[str]:
    """Every collection id the STAC API's collection search answers, following `next`."""
    ids: set[str] = set()
    url: str | None = "/collections"
    query: dict[str, Any] | None = {"limit": 7, **params}
    while url:
        r = catalog.get(url, params=query)
        assert r.status_code == 200, r.text
        body = r.json()
        ids |= {c["id"] for c in body["collections"]}
        url = next((link["href"] for link in body["links"] if link["rel"] == "next"), None)
        query = None
    return ids


def csw_ids(csw: CatalogueServiceWeb, constraints: list[Any]) -> set[str]:
    """Every record id a GetRecords query answers, following nextRecord."""
    ids: set[str] = set()
    start = 1
    while True:
        csw.getrecords2(constraints=constraints, startposition=start, maxrecords=5, esn="brief")
        ids |= set(csw.records)
        if csw.results["nextrecord"] == 0:
            return ids
        start = csw.results["nextrecord"]


def test_capabilities(csw: CatalogueServiceWeb) -> None:
    assert csw.identification.type == "CSW"
    assert csw.identification.version == "2.0.2"
    assert csw.provider.name == "LASAC"
    names = {op.name for op in csw.operations}
    assert {"GetCapabilities", "DescribeRecord", "GetRecords", "GetRecordById"} <= names
    getrecords = csw.get_operation_by_name("GetRecords")
    assert "http://www.isotc211.org/2005/gmd" in getrecords.parameters["outputSchema"]["values"]


def test_paging_by_next_record_visits_every_visible_record_once(
    csw: CatalogueServiceWeb,
) -> None:
    seen: list[str] = []
    start = 1
    while True:
        csw.getrecords2(startposition=start, maxrecords=4, esn="full")
        assert csw.results["matches"] == len(COLLECTIONS)
        seen += list(csw.records)
        if csw.results["nextrecord"] == 0:
            break
        assert csw.results["nextrecord"] == start + csw.results["returned"]
        start = csw.results["nextrecord"]
    assert sorted(seen) == sorted(c["id"] for c in COLLECTIONS)
    assert not set(seen) & set(HIDDEN)


def test_keyword_search_finds_what_the_stac_collection_search_finds(
    csw: CatalogueServiceWeb, catalog: TestClient
) -> None:
    for word in ("forest", "GF-2", "flood"):
        expected = stac_ids(catalog, q=word)
        assert expected, word
        assert csw_ids(csw, [fes.PropertyIsLike("csw:AnyText", f"%{word}%")]) == expected


def test_box_and_time_search_finds_what_the_stac_collection_search_finds(
    csw: CatalogueServiceWeb, catalog: TestClient
) -> None:
    box = [-100.0, -50.0, 20.0, 5.0]
    begin, end = "2017-06-01T00:00:00Z", "2019-12-31T23:59:59Z"
    expected = stac_ids(catalog, bbox=",".join(map(str, box)), datetime=f"{begin}/{end}")
    assert 0 < len(expected) < len(COLLECTIONS)
    found = csw_ids(
        csw,
        [
            [
                fes.BBox(box),
                fes.PropertyIsGreaterThanOrEqualTo("apiso:TempExtent_end", begin),
                fes.PropertyIsLessThanOrEqualTo("apiso:TempExtent_begin", end),
            ]
        ],
    )
    assert found == expected
    by_box_only = csw_ids(csw, [fes.BBox(box)])
    assert by_box_only == stac_ids(catalog, bbox=",".join(map(str, box)))
    assert by_box_only > found


def test_cql_text_constraint(discovery_url: str, catalog: TestClient) -> None:
    r = httpx.get(
        f"{discovery_url}/csw",
        params={
            "service": "CSW",
            "version": "2.0.2",
            "request": "GetRecords",
            "typeNames": "csw:Record",
            "resultType": "results",
            "maxRecords": "50",
            "constraintLanguage": "CQL_TEXT",
            "constraint": "csw:AnyText LIKE '%urban%' AND dc:title LIKE '%ZY-3%'",
        },
    )
    assert r.status_code == 200, r.text
    root = etree.fromstring(r.content)
    ids = {e.text for e in root.iter("{http://purl.org/dc/elements/1.1/}identifier")}
    expected = {c["id"] for c in COLLECTIONS if "urban" in c["keywords"] and "ZY-3" in c["title"]}
    assert ids == expected and expected


def test_iso_records_parse_with_owslib(csw: CatalogueServiceWeb) -> None:
    csw.getrecords2(outputschema=GMD, typenames="gmd:MD_Metadata", maxrecords=50, esn="full")
    assert len(csw.records) == len(COLLECTIONS)
    by_id = {c["id"]: c for c in COLLECTIONS}
    for rid, rec in csw.records.items():
        assert isinstance(rec, MD_Metadata)
        source = by_id[rid]
        ident = rec.identification[0]
        assert ident.title == source["title"]
        assert ident.abstract == source["description"]
        west, south, east, north = source["extent"]["spatial"]["bbox"][0]
        assert (float(ident.bbox.minx), float(ident.bbox.miny)) == (west, south)
        assert (float(ident.bbox.maxx), float(ident.bbox.maxy)) == (east, north)
        begin = source["extent"]["temporal"]["interval"][0][0]
        assert ident.temporalextent_start.startswith(begin[:19])
        thesauri = {
            (k.thesaurus or {}).get("title"): [w.name for w in k.keywords] for k in ident.keywords
        }
        assert thesauri["GCMD Platforms"] == source["summaries"]["platform"]
        assert thesauri["GCMD Instruments"] == source["summaries"]["instruments"]
        assert thesauri["GCMD Science Keywords"] == ["EARTH SCIENCE > LAND SURFACE"]
        online = {o.name: (o.protocol, o.url) for o in rec.distribution.online}
        stac = f"https://node.example/stac/collections/{rid}"
        assert online["STAC collection"] == ("WWW:LINK", stac)
        assert online["STAC items"] == ("WWW:LINK", f"{stac}/items")
        osdd = online["OpenSearch description"]
        assert osdd[0] == "OpenSearch" and osdd[1].endswith(f"/opensearch?parentIdentifier={rid}")
        protocol, wmts = online["WMTS capabilities"]
        assert protocol == "OGC:WMTS"
        assert wmts.startswith(f"https://node.example/tiles/collections/{rid}/")
        assert wmts.endswith("WMTSCapabilities.xml")
        assert rec.contact[0].organization == "LASAC"
        roles = etree.fromstring(rec.xml).xpath(
            "//gmd:CI_ResponsibleParty[gmd:organisationName/*='LASAC']/gmd:role/*/@codeListValue",
            namespaces={"gmd": GMD},
        )
        assert {"originator", "pointOfContact", "distributor"} <= set(roles)
        legal = ident.uselimitation[0]
        assert "non-commercial" in legal
        if source["license"] == "CC-BY-4.0":
            assert "CC-BY-4.0" in legal  # the collection's own license first


def test_get_record_by_id(csw: CatalogueServiceWeb) -> None:
    wanted = COLLECTIONS[3]["id"]
    csw.getrecordbyid([wanted, HIDDEN[0]], outputschema=GMD)
    assert list(csw.records) == [wanted]
    csw.getrecordbyid([wanted])
    assert csw.records[wanted].title == COLLECTIONS[3]["title"]
    bbox = csw.records[wanted].bbox
    assert [float(v) for v in (bbox.minx, bbox.miny, bbox.maxx, bbox.maxy)] == COLLECTIONS[3][
        "extent"
    ]["spatial"]["bbox"][0]


def test_hits_and_empty_pages_end_the_paging(discovery_url: str) -> None:
    base = {"service": "CSW", "version": "2.0.2", "request": "GetRecords"}
    for extra in (
        {"resultType": "hits"},
        {"resultType": "results", "maxRecords": "0"},
        {"resultType": "results", "startPosition": "999"},
    ):
        r = httpx.get(f"{discovery_url}/csw", params={**base, **extra})
        assert r.status_code == 200, r.text
        results = etree.fromstring(r.content).find(f"{{{CSW_NS}}}SearchResults")
        assert results.get("numberOfRecordsMatched") == str(len(COLLECTIONS))
        assert (results.get("numberOfRecordsReturned"), results.get("nextRecord")) == ("0", "0")


def test_describe_record(discovery_url: str) -> None:
    r = httpx.get(
        f"{discovery_url}/csw",
        params={"service": "CSW", "version": "2.0.2", "request": "DescribeRecord"},
    )
    assert r.status_code == 200
    root = etree.fromstring(r.content)
    components = root.findall(f"{{{CSW_NS}}}SchemaComponent")
    assert {c.get("targetNamespace") for c in components} == {CSW_NS, GMD}


@pytest.mark.parametrize(
    ("params", "code", "locator"),
    [
        ({"request": "GetRecords"}, "MissingParameterValue", "service"),
        ({"service": "CSW", "request": "Harvest"}, "OperationNotSupported", "request"),
        (
            {"service": "CSW", "request": "GetRecords", "startPosition": "0"},
            "InvalidParameterValue",
            "startPosition",
        ),
        (
            {"service": "CSW", "request": "GetRecords", "outputSchema": "urn:nope"},
            "InvalidParameterValue",
            "outputSchema",
        ),
        (
            {
                "service": "CSW",
                "request": "GetRecords",
                "constraintLanguage": "CQL_TEXT",
                "constraint": "dc:colour = 'red'",
            },
            "InvalidParameterValue",
            "constraint",
        ),
        (
            {
                "service": "CSW",
                "request": "GetRecords",
                "constraintLanguage": "CQL_TEXT",
                "constraint": "dc:title LIKE",
            },
            "InvalidParameterValue",
            "constraint",
        ),
        ({"service": "CSW", "request": "GetRecordById"}, "MissingParameterValue", "id"),
        (
            {"service": "CSW", "request": "GetRecords", "sortBy": "dc:subject:A"},
            "InvalidParameterValue",
            "sortBy",
        ),
        (
            {
                "service": "CSW",
                "request": "GetRecords",
                "constraintLanguage": "CQL_TEXT",
                "constraint": "(" * 3000 + "dc:title = 'x'" + ")" * 3000,
            },
            "InvalidParameterValue",
            "constraint",
        ),
        (
            {
                "service": "CSW",
                "request": "GetRecords",
                "constraintLanguage": "FILTER",
                "constraint": "<ogc:Filter xmlns:ogc='http://www.opengis.net/ogc'>"
                + "<ogc:Not>" * 400
                + TITLE_IS_X
                + "</ogc:Not>" * 400
                + "</ogc:Filter>",
            },
            "InvalidParameterValue",
            "constraint",
        ),
        (
            {
                "service": "CSW",
                "request": "GetRecords",
                "constraintLanguage": "FILTER",
                "constraint": "<ogc:Filter xmlns:ogc='http://www.opengis.net/ogc'>"
                + "<ogc:Not>" * 40
                + TITLE_IS_X
                + "</ogc:Not>" * 40
                + "</ogc:Filter>",
            },
            "InvalidParameterValue",
            "constraint",
        ),
    ],
)
def test_bad_requests_are_exception_reports(
    discovery_url: str, params: dict[str, str], code: str, locator: str
) -> None:
    r = httpx.get(f"{discovery_url}/csw", params=params)
    assert r.status_code == 400
    exc = etree.fromstring(r.content).find(f"{{{OWS}}}Exception")
    assert exc is not None
    assert (exc.get("exceptionCode"), exc.get("locator")) == (code, locator)


def test_sorted_paging_by_owslib_visits_every_record_once_in_order(
    csw: CatalogueServiceWeb,
) -> None:
    """ogc:SortBy (POST, as OWSLib sends it): titles descending across pages, then the ids."""
    order = fes.SortBy([fes.SortProperty("dc:title", "DESC")])
    ids: list[str] = []
    start = 1
    while start:
        csw.getrecords2(sortby=order, startposition=start, maxrecords=4, esn="brief")
        ids += list(csw.records)
        start = csw.results["nextrecord"]
    visible = [c for c in COLLECTIONS if c["id"] not in HIDDEN]
    expected = sorted(visible, key=lambda c: c["id"])
    expected.sort(key=lambda c: c["title"], reverse=True)
    assert ids == [c["id"] for c in expected]


def test_sort_by_in_the_get_form(discovery_url: str) -> None:
    """`sortBy=apiso:TempExtent_begin:D`: the latest collections first, ties by id."""
    params = {
        "service": "CSW",
        "version": "2.0.2",
        "request": "GetRecords",
        "typeNames": "csw:Record",
        "resultType": "results",
        "elementSetName": "brief",
        "maxRecords": "50",
        "sortBy": "apiso:TempExtent_begin:D",
    }
    r = httpx.get(f"{discovery_url}/csw", params=params)
    assert r.status_code == 200, r.text
    ids = [
        e.text
        for e in etree.fromstring(r.content).iter("{http://purl.org/dc/elements/1.1/}identifier")
    ]
    visible = sorted((c for c in COLLECTIONS if c["id"] not in HIDDEN), key=lambda c: c["id"])
    visible.sort(key=lambda c: c["extent"]["temporal"]["interval"][0][0], reverse=True)
    assert ids == [c["id"] for c in visible]


def test_post_that_is_not_xml(discovery_url: str) -> None:
    r = httpx.post(f"{discovery_url}/csw", content=b"<csw:GetRecords")
    assert r.status_code == 400
    assert b"not XML" in r.content


def test_iso_records_carry_the_catalogs_xyz_templates() -> None:
    bands = [{"name": f"b{n}", "common_name": c} for n, c in enumerate(("blue", "green", "red"))]
    source = collection(
        0, item_assets={"data": {"roles": ["data"], "type": "image/tiff", "eo:bands": bands}}
    )
    config = settings("https://discovery.node.example")
    record = MD_Metadata(etree.fromstring(IsoRecords(config).xml(source)))
    xyz = [o.url for o in record.distribution.online if o.protocol == "XYZ"]
    catalog_links = collection_map_links(config.tiler_url, source)
    assert xyz == [link["href"] for link in catalog_links if link["rel"] == "xyz"] and xyz
    assert xyz[0].endswith("/tiles/WebMercatorQuad/{z}/{x}/{y}.png")
