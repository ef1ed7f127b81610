"""CSW 2.0.2 at `/csw` (GET key-value pairs and POST XML): GetCapabilities, DescribeRecord,
GetRecords and GetRecordById over the collections an anonymous caller may see, as `csw:Record`
or ISO 19139 `gmd:MD_Metadata`. Queries run through pgSTAC's collection search
(`constraints.py`, `records.py`); errors are OWS exception reports (HTTP 400).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from lxml import etree

from csdr_discovery import constraints, iso19139, records
from csdr_discovery.dublin_core import CSW, CSW_NSMAP, DC, DCT, OWS, csw_record
from csdr_discovery.settings import Settings
from csdr_discovery.summary import summarise
from csdr_service.pools import PoolDep

OGC = "http://www.opengis.net/ogc"
XLINK = "http://www.w3.org/1999/xlink"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XS = "http://www.w3.org/2001/XMLSchema"
GMD = iso19139.NAMESPACE
SCHEMAS = {CSW: "csw:Record", GMD: "gmd:MD_Metadata"}
TYPE_NAMES = {"csw:Record": CSW, "gmd:MD_Metadata": GMD}
ELEMENT_SETS = ("brief", "summary", "full")
OPERATIONS = ("GetCapabilities", "DescribeRecord", "GetRecords", "GetRecordById")
XML = "application/xml; charset=utf-8"
SAFE_XML = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)

router = APIRouter(tags=["CSW"])
# What /csw answers: CSW documents, and OWS exception reports for bad requests (OpenAPI).
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A CSW 2.0.2 document (Capabilities, GetRecordsResponse ...)",
        "content": {"application/xml": {"schema": {"type": "string"}}},
    },
    400: {
        "description": "An OWS 1.2 ExceptionReport naming the parameter at fault",
        "content": {"application/xml": {"schema": {"type": "string"}}},
    },
}


class CswError(Exception):
    """An OWS exception: `code` from OWS Common (MissingParameterValue ...), `locator` the
    parameter at fault."""

    def __init__(self, code: str, locator: str, text: str) -> None:
        super().__init__(text)
        self.code, self.locator, self.text = code, locator, text


def _xml(root: etree._Element, status: int = 200, parts: list[bytes] | None = None) -> Response:
    body = iso19139.serialise(root, parts or [])
    return Response(body, status_code=status, media_type=XML)


def exception_report(exc: CswError) -> Response:
    """The OWS 1.2 exception report of a failed request, as HTTP 400."""
    root = etree.Element(
        f"{{{OWS}}}ExceptionReport", nsmap={"ows": OWS}, version="1.2.0", language="en"
    )
    e = etree.SubElement(root, f"{{{OWS}}}Exception", exceptionCode=exc.code, locator=exc.locator)
    etree.SubElement(e, f"{{{OWS}}}ExceptionText").text = exc.text
    return _xml(root, 400)


class CswRequest:
    """One CSW request, read from KVP or from a POST XML document."""

    def __init__(self, name: str, params: Mapping[str, str], query: etree._Element | None = None):
        self.name = name
        self.params = params
        self.query = query  # the POSTed csw:Query element (GetRecords), if any

    def get(self, key: str, default: str | None = None) -> str | None:
        """A parameter's value (names are case-insensitive); empty means absent."""
        value = self.params.get(key.lower())
        return value if value not in (None, "") else default

    def integer(self, key: str, default: int, minimum: int) -> int:
        """An integer parameter, at least `minimum`."""
        text = self.get(key)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            raise CswError("InvalidParameterValue", key, f"{key} must be an integer") from None
        if value < minimum:
            raise CswError("InvalidParameterValue", key, f"{key} must be at least {minimum}")
        return value


def read_kvp(query: Mapping[str, str]) -> CswRequest:
    """A GET request; `service=CSW` and `request` are required."""
    params = {k.lower(): v for k, v in query.items()}
    service = params.get("service")
    if not service:
        raise CswError("MissingParameterValue", "service", "service=CSW is required")
    if service.upper() != "CSW":
        raise CswError("InvalidParameterValue", "service", f"service {service!r} is not CSW")
    name = params.get("request")
    if not name:
        raise CswError("MissingParameterValue", "request", "request is required")
    return CswRequest(name, params)


def read_xml(body: bytes) -> CswRequest:
    """A POSTed request document."""
    try:
        root = etree.fromstring(body, SAFE_XML)
    except etree.XMLSyntaxError as exc:
        raise CswError("NoApplicableCode", "request", f"the request is not XML: {exc}") from None
    name = etree.QName(root).localname
    params = {k.lower(): v for k, v in root.attrib.items()}
    params["request"] = name
    query = root.find(f"{{{CSW}}}Query")
    if name == "GetRecordById":
        params["id"] = ",".join(e.text or "" for e in root.findall(f"{{{CSW}}}Id"))
        esn = root.find(f"{{{CSW}}}ElementSetName")
        if esn is not None and esn.text:
            params["elementsetname"] = esn.text.strip()
    if query is not None:
        params["typenames"] = query.get("typeNames", "")
        esn = query.find(f"{{{CSW}}}ElementSetName")
        if esn is not None and esn.text:
            params["elementsetname"] = esn.text.strip()
        if sort := _sort_by(query):
            params["sortby"] = sort
        constraint = query.find(f"{{{CSW}}}Constraint")
        if constraint is not None:
            fes = constraint.find(f"{{{OGC}}}Filter")
            cql = constraint.find(f"{{{CSW}}}CqlText")
            if fes is not None:
                params["constraintlanguage"] = "FILTER"
                params["constraint"] = etree.tostring(fes).decode()
            elif cql is not None and cql.text:
                params["constraintlanguage"] = "CQL_TEXT"
                params["constraint"] = cql.text
    return CswRequest(name, params, query)


def _sort_by(query: etree._Element) -> str:
    """An ogc:SortBy as the GET form (`dc:title:D,dc:identifier:A`)."""
    parts = []
    for prop in query.iterfind(f"{{{OGC}}}SortBy/{{{OGC}}}SortProperty"):
        name = (prop.findtext(f"{{{OGC}}}PropertyName") or "").strip()
        descending = (prop.findtext(f"{{{OGC}}}SortOrder") or "").strip().upper() == "DESC"
        parts.append(f"{name}:{'D' if descending else 'A'}")
    return ",".join(parts)


def _output_schema(req: CswRequest) -> str:
    schema = req.get("outputSchema") or CSW
    if schema not in SCHEMAS:
        raise CswError(
            "InvalidParameterValue",
            "outputSchema",
            f"outputSchema {schema!r} is not one of {', '.join(SCHEMAS)}",
        )
    return schema


def _element_set(req: CswRequest) -> str:
    esn = (req.get("ElementSetName") or "summary").lower()
    if esn not in ELEMENT_SETS:
        raise CswError(
            "InvalidParameterValue", "ElementSetName", "ElementSetName is brief, summary or full"
        )
    return esn


def _add_record(
    parent: etree._Element,
    parts: list[bytes],
    collection: dict[str, Any],
    schema: str,
    esn: str,
    request: Request,
) -> None:
    if schema == GMD:
        iso19139.placeholder(parent, parts, request.app.state.iso.xml(collection))
    else:
        parent.append(csw_record(summarise(collection, request.app.state.settings), esn))


def capabilities(settings: Settings) -> etree._Element:
    """The GetCapabilities document."""
    url = f"{settings.public_url.rstrip('/')}/csw"
    nsmap = {**CSW_NSMAP, "ogc": OGC, "xlink": XLINK, "xsi": XSI, "gmd": GMD}
    root = etree.Element(f"{{{CSW}}}Capabilities", nsmap=nsmap, version="2.0.2")
    root.set(
        f"{{{XSI}}}schemaLocation",
        f"{CSW} http://schemas.opengis.net/csw/2.0.2/CSW-discovery.xsd",
    )
    ident = etree.SubElement(root, f"{{{OWS}}}ServiceIdentification")
    etree.SubElement(ident, f"{{{OWS}}}Title").text = settings.title
    etree.SubElement(ident, f"{{{OWS}}}Abstract").text = settings.abstract
    kws = etree.SubElement(ident, f"{{{OWS}}}Keywords")
    for word in ("Earth observation", "satellite imagery", "STAC", "GEOSS"):
        etree.SubElement(kws, f"{{{OWS}}}Keyword").text = word
    etree.SubElement(ident, f"{{{OWS}}}ServiceType").text = "CSW"
    etree.SubElement(ident, f"{{{OWS}}}ServiceTypeVersion").text = "2.0.2"
    etree.SubElement(ident, f"{{{OWS}}}Fees").text = "none"
    etree.SubElement(ident, f"{{{OWS}}}AccessConstraints").text = settings.legal_constraints
    provider = etree.SubElement(root, f"{{{OWS}}}ServiceProvider")
    etree.SubElement(provider, f"{{{OWS}}}ProviderName").text = settings.organisation
    site = etree.SubElement(provider, f"{{{OWS}}}ProviderSite")
    site.set(f"{{{XLINK}}}href", settings.organisation_url or settings.public_url)
    contact = etree.SubElement(provider, f"{{{OWS}}}ServiceContact")
    info = etree.SubElement(contact, f"{{{OWS}}}ContactInfo")
    address = etree.SubElement(info, f"{{{OWS}}}Address")
    etree.SubElement(address, f"{{{OWS}}}Country").text = settings.country
    if settings.contact_email:
        etree.SubElement(address, f"{{{OWS}}}ElectronicMailAddress").text = settings.contact_email
    ops = etree.SubElement(root, f"{{{OWS}}}OperationsMetadata")
    for name in OPERATIONS:
        op = etree.SubElement(ops, f"{{{OWS}}}Operation", name=name)
        http = etree.SubElement(etree.SubElement(op, f"{{{OWS}}}DCP"), f"{{{OWS}}}HTTP")
        etree.SubElement(http, f"{{{OWS}}}Get").set(f"{{{XLINK}}}href", url)
        etree.SubElement(http, f"{{{OWS}}}Post").set(f"{{{XLINK}}}href", url)
        if name in ("GetRecords", "GetRecordById"):
            _parameter(op, "outputSchema", list(SCHEMAS))
            _parameter(op, "ElementSetName", list(ELEMENT_SETS))
            _parameter(op, "outputFormat", ["application/xml"])
        if name == "GetRecords":
            _parameter(op, "typeNames", list(TYPE_NAMES))
            _parameter(op, "resultType", ["hits", "results"])
            _parameter(op, "CONSTRAINTLANGUAGE", ["FILTER", "CQL_TEXT"])
            constraint = etree.SubElement(op, f"{{{OWS}}}Constraint", name="SupportedISOQueryables")
            for q in (
                "apiso:AnyText",
                "apiso:Identifier",
                "apiso:Title",
                "apiso:Abstract",
                "apiso:Subject",
                "apiso:BoundingBox",
                "apiso:TempExtent_begin",
                "apiso:TempExtent_end",
            ):
                etree.SubElement(constraint, f"{{{OWS}}}Value").text = q
        if name == "DescribeRecord":
            _parameter(op, "typeName", list(TYPE_NAMES))
            _parameter(op, "schemaLanguage", ["http://www.w3.org/XML/Schema"])
    _parameter(ops, "service", ["CSW"])
    _parameter(ops, "version", ["2.0.2"])
    fc = etree.SubElement(root, f"{{{OGC}}}Filter_Capabilities")
    spatial = etree.SubElement(fc, f"{{{OGC}}}Spatial_Capabilities")
    operands = etree.SubElement(spatial, f"{{{OGC}}}GeometryOperands")
    for g in ("gml:Envelope", "gml:Point", "gml:Polygon"):
        etree.SubElement(operands, f"{{{OGC}}}GeometryOperand").text = g
    sops = etree.SubElement(spatial, f"{{{OGC}}}SpatialOperators")
    for s in (
        "BBOX",
        "Intersects",
        "Within",
        "Contains",
        "Disjoint",
        "Equals",
        "Overlaps",
        "Touches",
        "Crosses",
    ):
        etree.SubElement(sops, f"{{{OGC}}}SpatialOperator", name=s)
    scalar = etree.SubElement(fc, f"{{{OGC}}}Scalar_Capabilities")
    etree.SubElement(scalar, f"{{{OGC}}}LogicalOperators")
    cops = etree.SubElement(scalar, f"{{{OGC}}}ComparisonOperators")
    for c in (
        "EqualTo",
        "NotEqualTo",
        "LessThan",
        "GreaterThan",
        "LessThanEqualTo",
        "GreaterThanEqualTo",
        "Like",
        "Between",
        "NullCheck",
    ):
        etree.SubElement(cops, f"{{{OGC}}}ComparisonOperator").text = c
    ids = etree.SubElement(fc, f"{{{OGC}}}Id_Capabilities")
    etree.SubElement(ids, f"{{{OGC}}}EID")
    etree.SubElement(ids, f"{{{OGC}}}FID")
    return root


def _parameter(parent: etree._Element, name: str, allowed: list[str]) -> None:
    p = etree.SubElement(parent, f"{{{OWS}}}Parameter", name=name)
    for v in allowed:
        etree.SubElement(p, f"{{{OWS}}}Value").text = v


def describe_record(req: CswRequest) -> etree._Element:
    """DescribeRecord: the XML Schema of each record type asked for (default: both)."""
    asked = req.get("typeName") or req.get("typeNames")
    names = [n.strip() for n in asked.split(",")] if asked else list(TYPE_NAMES)
    for n in names:
        if n not in TYPE_NAMES:
            raise CswError("InvalidParameterValue", "typeName", f"unknown typeName {n!r}")
    root = etree.Element(f"{{{CSW}}}DescribeRecordResponse", nsmap=CSW_NSMAP)
    for n in names:
        component = etree.SubElement(
            root,
            f"{{{CSW}}}SchemaComponent",
            schemaLanguage="XMLSCHEMA",
            targetNamespace=TYPE_NAMES[n],
        )
        schema = etree.SubElement(
            component,
            f"{{{XS}}}schema",
            nsmap={"xs": XS},
            targetNamespace=TYPE_NAMES[n],
            elementFormDefault="qualified",
        )
        if n == "gmd:MD_Metadata":
            etree.SubElement(
                schema,
                f"{{{XS}}}include",
                schemaLocation="http://schemas.opengis.net/iso/19139/20060504/gmd/gmd.xsd",
            )
            continue
        for ns, loc in (
            (DC, "rec-dcmes.xsd"),
            (DCT, "rec-dcterms.xsd"),
            (OWS, "../../../ows/1.0.0/owsAll.xsd"),
        ):
            etree.SubElement(
                schema,
                f"{{{XS}}}import",
                namespace=ns,
                schemaLocation=f"http://schemas.opengis.net/csw/2.0.2/{loc}",
            )
        etree.SubElement(
            schema,
            f"{{{XS}}}include",
            schemaLocation="http://schemas.opengis.net/csw/2.0.2/record.xsd",
        )
    return root


async def get_records(
    req: CswRequest, request: Request, pool: Any, settings: Settings
) -> tuple[etree._Element, list[bytes]]:
    """GetRecords: one page of the matching collections, with numberOfRecordsMatched and the
    nextRecord a harvester follows (0 after the last page)."""
    schema = _output_schema(req)
    esn = _element_set(req)
    type_names = req.get("typeNames") or "csw:Record"
    for t in type_names.split(","):
        if t.strip().split(":")[-1] not in ("Record", "MD_Metadata"):
            raise CswError("InvalidParameterValue", "typeNames", f"unknown typeNames {t!r}")
    result_type = (req.get("resultType") or "hits").lower()
    if result_type not in ("hits", "results", "validate"):
        raise CswError("InvalidParameterValue", "resultType", "resultType is hits or results")
    start = req.integer("startPosition", 1, 1)
    limit = min(req.integer("maxRecords", 10, 0), settings.csw_max_records)
    text = req.get("constraint")
    tree = None
    if text is not None:
        language = req.get("constraintLanguage")
        if language is None:
            raise CswError(
                "MissingParameterValue",
                "constraintLanguage",
                "constraintLanguage (FILTER or CQL_TEXT) is required with a constraint",
            )
        try:
            tree = constraints.parse(text, language)
        except constraints.ConstraintError as exc:
            raise CswError("InvalidParameterValue", "constraint", str(exc)) from None
    try:
        criteria = constraints.to_search(tree)
    except constraints.ConstraintError as exc:
        raise CswError("InvalidParameterValue", "constraint", str(exc)) from None
    try:
        order = constraints.sort_order(req.get("sortBy"))
    except constraints.ConstraintError as exc:
        raise CswError("InvalidParameterValue", "sortBy", str(exc)) from None
    if result_type == "validate":
        ack = etree.Element(f"{{{CSW}}}Acknowledgement", nsmap=CSW_NSMAP, timeStamp=_now())
        return ack, []
    shown = await records.visible(request, pool)
    page = await records.search(
        pool, shown, criteria, limit if result_type == "results" else 0, start - 1, order
    )
    returned = page.collections
    following = start + len(returned)
    # 0 when this page is the last (or empty: maxRecords=0 must not send a client round again)
    next_record = following if returned and following <= page.matched else 0
    root = etree.Element(
        f"{{{CSW}}}GetRecordsResponse", nsmap={**CSW_NSMAP, "gmd": GMD}, version="2.0.2"
    )
    etree.SubElement(root, f"{{{CSW}}}SearchStatus", timestamp=_now())
    results = etree.SubElement(
        root,
        f"{{{CSW}}}SearchResults",
        numberOfRecordsMatched=str(page.matched),
        numberOfRecordsReturned=str(len(returned)),
        nextRecord=str(next_record),
        recordSchema=schema,
        elementSet=esn,
    )
    parts: list[bytes] = []
    for collection in returned:
        _add_record(results, parts, collection, schema, esn, request)
    return root, parts


async def get_record_by_id(
    req: CswRequest, request: Request, pool: Any, settings: Settings
) -> tuple[etree._Element, list[bytes]]:
    """GetRecordById: the records of the given ids that exist and are visible."""
    ids = [i.strip() for i in (req.get("id") or "").split(",") if i.strip()]
    if not ids:
        raise CswError("MissingParameterValue", "id", "id is required")
    schema = _output_schema(req)
    esn = _element_set(req) if req.get("ElementSetName") else "full"
    shown = await records.visible(request, pool)
    page = await records.search(pool, shown, {"ids": ids}, len(ids), 0)
    root = etree.Element(f"{{{CSW}}}GetRecordByIdResponse", nsmap={**CSW_NSMAP, "gmd": GMD})
    parts: list[bytes] = []
    for collection in page.collections:
        _add_record(root, parts, collection, schema, esn, request)
    return root, parts


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


async def dispatch(req: CswRequest, request: Request, pool: Any) -> Response:
    """Answer one CSW request."""
    settings: Settings = request.app.state.settings
    version = req.get("version")
    if req.name != "GetCapabilities" and version not in (None, "2.0.2"):
        raise CswError("VersionNegotiationFailed", "version", "this catalogue speaks CSW 2.0.2")
    if req.name == "GetCapabilities":
        return _xml(capabilities(settings))
    if req.name == "DescribeRecord":
        return _xml(describe_record(req))
    if req.name in ("GetRecords", "GetRecordById"):
        answer = get_records if req.name == "GetRecords" else get_record_by_id
        root, parts = await answer(req, request, pool, settings)
        return _xml(root, parts=parts)
    raise CswError(
        "OperationNotSupported",
        "request",
        f"request {req.name!r} is not one of {', '.join(OPERATIONS)}",
    )


@router.get(
    "/csw", summary="CSW 2.0.2 (key-value pairs)", response_class=Response, responses=RESPONSES
)
async def csw_get(request: Request, pool: PoolDep) -> Response:
    """CSW 2.0.2 requests as GET key-value pairs (`service=CSW&request=...`)."""
    try:
        return await dispatch(read_kvp(request.query_params), request, pool)
    except CswError as exc:
        return exception_report(exc)


@router.post(
    "/csw",
    summary="CSW 2.0.2 (XML request documents)",
    response_class=Response,
    responses=RESPONSES,
)
async def csw_post(request: Request, pool: PoolDep) -> Response:
    """CSW 2.0.2 requests as POSTed XML documents (csw:GetRecords ...)."""
    try:
        return await dispatch(read_xml(await request.body()), request, pool)
    except CswError as exc:
        return exception_report(exc)
