"""Collections as Dublin Core: CSW 2.0.2's `csw:Record` (brief, summary and full element sets)
and OAI-PMH's `oai_dc:dc`, written from a collection's summary with lxml."""

from __future__ import annotations

from lxml import etree

from csdr_discovery.summary import Summary

CSW = "http://www.opengis.net/cat/csw/2.0.2"
DC = "http://purl.org/dc/elements/1.1/"
DCT = "http://purl.org/dc/terms/"
OWS = "http://www.opengis.net/ows"
OAI_DC = "http://www.openarchives.org/OAI/2.0/oai_dc/"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
CSW_NSMAP = {"csw": CSW, "dc": DC, "dct": DCT, "ows": OWS}
# Latitude first, as the EPSG definition of 4326 orders the axes (what OWSLib reads).
CRS_4326 = "urn:ogc:def:crs:EPSG::4326"
DATASET = "dataset"


def _add(parent: etree._Element, tag: str, text: str | None, **attrib: str) -> None:
    if text:
        etree.SubElement(parent, tag, attrib).text = text


def csw_record(summary: Summary, element_set: str = "full") -> etree._Element:
    """`csw:BriefRecord`, `csw:SummaryRecord` or `csw:Record` for `element_set`."""
    name = {"brief": "BriefRecord", "summary": "SummaryRecord"}.get(element_set, "Record")
    rec = etree.Element(f"{{{CSW}}}{name}", nsmap=CSW_NSMAP)
    _add(rec, f"{{{DC}}}identifier", summary.identifier)
    _add(rec, f"{{{DC}}}title", summary.title)
    _add(rec, f"{{{DC}}}type", DATASET)
    if element_set != "brief":
        for word in [
            *summary.keywords,
            *summary.platforms,
            *summary.instruments,
            *summary.science_keywords,
        ]:
            _add(rec, f"{{{DC}}}subject", word)
        _add(rec, f"{{{DC}}}format", "image/tiff; application=geotiff; profile=cloud-optimized")
        if summary.updated:
            _add(rec, f"{{{DCT}}}modified", summary.updated.isoformat())
        _add(rec, f"{{{DCT}}}abstract", summary.abstract)
    if element_set == "full":
        _add(rec, f"{{{DC}}}rights", summary.rights)
        if summary.begin or summary.end:
            begin = summary.begin.isoformat() if summary.begin else ""
            end = summary.end.isoformat() if summary.end else ""
            _add(rec, f"{{{DCT}}}temporal", f"{begin}/{end}")
        for res in summary.resources:
            _add(rec, f"{{{DCT}}}references", res.url, scheme=res.protocol)
    west, south, east, north = summary.bbox
    box = etree.SubElement(rec, f"{{{OWS}}}BoundingBox", crs=CRS_4326, dimensions="2")
    etree.SubElement(box, f"{{{OWS}}}LowerCorner").text = f"{south} {west}"
    etree.SubElement(box, f"{{{OWS}}}UpperCorner").text = f"{north} {east}"
    return rec


def oai_dc(summary: Summary) -> etree._Element:
    """`oai_dc:dc` of a collection (OAI-PMH's required format)."""
    dc = etree.Element(f"{{{OAI_DC}}}dc", nsmap={"oai_dc": OAI_DC, "dc": DC, "xsi": XSI})
    dc.set(
        f"{{{XSI}}}schemaLocation",
        f"{OAI_DC} http://www.openarchives.org/OAI/2.0/oai_dc.xsd",
    )
    _add(dc, f"{{{DC}}}identifier", summary.identifier)
    _add(dc, f"{{{DC}}}title", summary.title)
    _add(dc, f"{{{DC}}}description", summary.abstract)
    _add(dc, f"{{{DC}}}type", DATASET)
    for word in [
        *summary.keywords,
        *summary.platforms,
        *summary.instruments,
        *summary.science_keywords,
    ]:
        _add(dc, f"{{{DC}}}subject", word)
    _add(dc, f"{{{DC}}}rights", summary.rights)
    if summary.begin or summary.end:
        begin = summary.begin.isoformat() if summary.begin else ""
        end = summary.end.isoformat() if summary.end else ""
        _add(dc, f"{{{DC}}}coverage", f"{begin}/{end}")
    west, south, east, north = summary.bbox
    _add(dc, f"{{{DC}}}coverage", f"{west} {south} {east} {north}")
    for res in summary.resources:
        _add(dc, f"{{{DC}}}relation", res.url)
    return dc
