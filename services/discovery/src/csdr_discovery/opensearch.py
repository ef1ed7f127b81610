"""CEOS OpenSearch (OpenSearch Best Practices 1.3) at `/opensearch`: description documents with
the seven required parameters and two-step search, collections first (pgSTAC's collection search,
as CSW uses it) then the granules of one collection (`parentIdentifier`), answered by the node's
STAC API item search over HTTP, so granules are the catalog's items: same results, same access
rules, no second index. Atom and GeoJSON responses; bad parameters answer 400 in the node's
`{"code", "description"}` shape.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from lxml import etree

from csdr_discovery import atom, records
from csdr_discovery.atom import ATOM, EO, GEO, OS, TIME
from csdr_discovery.settings import Settings
from csdr_discovery.stac_api import CatalogUnavailable, StacApiClient
from csdr_discovery.summary import summarise
from csdr_service.errors import error_response
from csdr_service.pools import PoolDep

PARAM = "http://a9.com/-/spec/opensearch/extensions/parameters/1.0/"
OSDD_TYPE = "application/opensearchdescription+xml"
ATOM_TYPE = "application/atom+xml"
GEOJSON_TYPE = "application/geo+json"
# The parameters of the best practice's BP-005 requirement, in template order.
PARAMETERS = [
    ("q", "searchTerms", "Free text: words of the title, description or keywords"),
    ("bbox", "geo:box", "west,south,east,north in degrees (EPSG:4326)"),
    ("start", "time:start", "Start of the time window (RFC 3339 date or date-time)"),
    ("end", "time:end", "End of the time window (RFC 3339 date or date-time)"),
    ("uid", "geo:uid", "Identifier of one collection or granule"),
    ("startIndex", "startIndex", "Index of the first result, from 1"),
    ("count", "count", "Results per page"),
]
MAX_COUNT = 100
MAX_DEPTH = 10_000  # the STAC API's largest page: granules are read as one page up to here

logger = logging.getLogger(__name__)
router = APIRouter(tags=["OpenSearch"])
OSDD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "An OpenSearch 1.1 description document",
        "content": {OSDD_TYPE: {"schema": {"type": "string"}}},
    }
}
FEED_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A page of results: an Atom feed (.atom) or a GeoJSON FeatureCollection "
        "(.json)",
        "content": {
            ATOM_TYPE: {"schema": {"type": "string"}},
            GEOJSON_TYPE: {"schema": {"type": "object"}},
        },
    }
}


class SearchError(ValueError):
    """A parameter this service cannot use; the message names it."""


def _base(settings: Settings) -> str:
    return f"{settings.public_url.rstrip('/')}/opensearch"


def _template(url: str, fixed: dict[str, str]) -> str:
    pairs = [f"{k}={quote(v, safe='')}" for k, v in fixed.items()]
    pairs += [f"{name}={{{kind}?}}" for name, kind, _ in PARAMETERS]
    return f"{url}?{'&'.join(pairs)}"


def description(settings: Settings, parent: str | None, title: str | None) -> etree._Element:
    """The OpenSearch description of the collection search, or of one collection's granules."""
    root = etree.Element(
        f"{{{OS}}}OpenSearchDescription",
        nsmap={None: OS, "geo": GEO, "time": TIME, "eo": EO, "param": PARAM, "atom": ATOM},
    )
    what = f"Scenes of {title or parent}" if parent else settings.title
    etree.SubElement(root, f"{{{OS}}}ShortName").text = what[:16]
    etree.SubElement(root, f"{{{OS}}}LongName").text = what[:48]
    etree.SubElement(root, f"{{{OS}}}Description").text = (
        f"Granules (scenes) of the collection {parent}, from the node's STAC API."
        if parent
        else f"{settings.abstract} Search collections, then the granules of one."
    )
    etree.SubElement(root, f"{{{OS}}}Tags").text = "CEOS-OS-BP-V1.1/L1"
    if settings.contact_email:
        etree.SubElement(root, f"{{{OS}}}Contact").text = settings.contact_email
    fixed = {"parentIdentifier": parent} if parent else {}
    search = f"{_base(settings)}/{'granules' if parent else 'collections'}"
    rel = "results" if parent else "collection"
    for kind, suffix in ((ATOM_TYPE, "atom"), (GEOJSON_TYPE, "json")):
        url = etree.SubElement(
            root,
            f"{{{OS}}}Url",
            type=kind,
            rel=rel,
            indexOffset="1",
            pageOffset="1",
            template=_template(f"{search}.{suffix}", fixed),
        )
        for name, param, title_text in PARAMETERS:
            attrib = {"name": name, "value": f"{{{param}}}", "title": title_text, "minimum": "0"}
            if name == "count":
                attrib["maxInclusive"] = str(MAX_COUNT)
            if name == "startIndex":
                attrib["minInclusive"] = "1"
            etree.SubElement(url, f"{{{PARAM}}}Parameter", attrib)
    self_href = _base(settings) + (f"?parentIdentifier={quote(parent, safe='')}" if parent else "")
    etree.SubElement(root, f"{{{OS}}}Url", type=OSDD_TYPE, rel="self", template=self_href)
    example = {"role": "example", "searchTerms": "GF"} if not parent else {"role": "example"}
    if parent:
        example[f"{{{GEO}}}box"] = "-180,-90,180,90"
    etree.SubElement(root, f"{{{OS}}}Query", example)
    etree.SubElement(root, f"{{{OS}}}Attribution").text = settings.organisation
    etree.SubElement(root, f"{{{OS}}}SyndicationRight").text = "open"
    etree.SubElement(root, f"{{{OS}}}Language").text = "en"
    etree.SubElement(root, f"{{{OS}}}OutputEncoding").text = "UTF-8"
    etree.SubElement(root, f"{{{OS}}}InputEncoding").text = "UTF-8"
    return root


class Query:
    """The parameters of one search, with empty values read as absent (BP-005F)."""

    def __init__(self, params: dict[str, str]) -> None:
        self.raw = {k: v for k, v in params.items() if v != ""}
        self.q = self.raw.get("q")
        self.bbox = _bbox(self.raw["bbox"]) if "bbox" in self.raw else None
        start = _moment("start", self.raw["start"], False) if "start" in self.raw else None
        end = _moment("end", self.raw["end"], True) if "end" in self.raw else None
        self.datetime = f"{start or '..'}/{end or '..'}" if start or end else None
        self.uid = self.raw.get("uid")
        self.start_index = _integer(self.raw, "startIndex", 1, 1, None)
        self.count = _integer(self.raw, "count", 10, 0, MAX_COUNT)
        self.parent = self.raw.get("parentIdentifier")

    def echo(self) -> dict[str, str]:
        """The request's parameters as os:Query attributes (geo:, time:, eo: namespaced)."""
        prefixes = {"geo": GEO, "time": TIME, "eo": EO}
        names = {name: kind for name, kind, _ in PARAMETERS}
        names["parentIdentifier"] = "eo:parentIdentifier"
        out = {}
        for key, value in self.raw.items():
            prefix, _, local = names.get(key, "").rpartition(":")
            if not local or not local.isidentifier():
                continue  # a parameter of no OpenSearch name is not echoed
            out[f"{{{prefixes[prefix]}}}{local}" if prefix else local] = value
        return out


def _integer(params: dict[str, str], name: str, default: int, low: int, high: int | None) -> int:
    if name not in params:
        return default
    try:
        value = int(params[name])
    except ValueError:
        raise SearchError(f"{name} must be an integer") from None
    if value < low or (high is not None and value > high):
        bounds = f"from {low}" + (f" to {high}" if high is not None else "")
        raise SearchError(f"{name} must be {bounds}")
    return value


def _bbox(text: str) -> list[float]:
    try:
        box = [float(v) for v in text.split(",")]
    except ValueError:
        raise SearchError("bbox must be four numbers: west,south,east,north") from None
    if len(box) != 4:
        raise SearchError("bbox must be four numbers: west,south,east,north")
    west, south, east, north = box
    if not (-90 <= south <= north <= 90 and -180 <= west <= 180 and -180 <= east <= 180):
        raise SearchError("bbox must be west,south,east,north within -180..180, -90..90")
    return box


def _moment(name: str, value: str, end: bool) -> str:
    """An RFC 3339 date-time; a date alone is its whole UTC day (from its first instant, or to
    its last)."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return f"{day}T23:59:59.999999Z" if end else f"{day}T00:00:00Z"
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SearchError(f"{name} must be an RFC 3339 date or date-time, not {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _stamp(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def _links_of(url: str, query: Query, total: int, fmt: str) -> list[dict[str, str]]:
    """first/prev/self/next/last links of a page (BP-011B)."""
    kind = ATOM_TYPE if fmt == "atom" else GEOJSON_TYPE
    count = query.count

    rest = urlencode({k: v for k, v in query.raw.items() if k != "startIndex"})
    prefix = f"{url}?{rest}&startIndex=" if rest else f"{url}?startIndex="

    def at(index: int) -> str:
        return f"{prefix}{index}"

    links = [{"rel": "self", "href": at(query.start_index), "type": kind}]
    if count <= 0:
        return links
    links.append({"rel": "first", "href": at(1), "type": kind})
    if query.start_index > 1:
        links.append(
            {"rel": "previous", "href": at(max(query.start_index - count, 1)), "type": kind}
        )
    if query.start_index - 1 + count < total:
        links.append({"rel": "next", "href": at(query.start_index + count), "type": kind})
    last = max(((total - 1) // count) * count + 1, 1)
    links.append({"rel": "last", "href": at(last), "type": kind})
    return links


def _feed_head(title: str, query: Query, total: int, links: list[dict[str, str]]) -> list[str]:
    """The feed's own elements: id, title, updated, the OpenSearch totals and the request."""
    echo = {atom.prefixed(k): v for k, v in query.echo().items()}
    return [
        atom.element("id", links[0]["href"]),
        atom.element("title", title),
        atom.element("updated", _stamp(datetime.now(UTC))),
        atom.element("os:totalResults", total),
        atom.element("os:startIndex", query.start_index),
        atom.element("os:itemsPerPage", query.count),
        atom.empty("os:Query", {"role": "request", **echo}),
    ]


def _entry_head(ident: str, title: str, updated: str, summary: str) -> str:
    return (
        atom.element("id", ident)
        + atom.element("title", title)
        + atom.element("updated", updated)
        + atom.element("summary", summary, {"type": "text"})
    )


def _geojson(body: dict[str, Any]) -> Response:
    """A GeoJSON answer serialised by orjson (the items come from orjson too; FastAPI's
    JSONResponse would run them through the standard library's json)."""
    return Response(orjson.dumps(body), media_type=GEOJSON_TYPE)


def _atom(body: bytes) -> Response:
    return Response(body, media_type=f"{ATOM_TYPE}; charset=utf-8")


def _xml(root: etree._Element, media_type: str) -> Response:
    body = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return Response(body, media_type=f"{media_type}; charset=utf-8")


@router.get(
    "/opensearch",
    summary="OpenSearch description document",
    response_class=Response,
    responses=OSDD_RESPONSES,
)
async def osdd(request: Request, pool: PoolDep, parentIdentifier: str | None = None) -> Response:  # noqa: N803
    """The description of the collection search, or with `parentIdentifier` of the granule
    search of that collection (404 when anonymous callers cannot see it)."""
    settings: Settings = request.app.state.settings
    title = None
    if parentIdentifier:
        shown = await records.visible(request, pool)
        page = await records.search(pool, shown, {"ids": [parentIdentifier]}, 1, 0)
        if not page.collections:
            return error_response(404, "NotFound", f"no collection {parentIdentifier!r}")
        title = page.collections[0].get("title")
    return _xml(description(settings, parentIdentifier or None, title), OSDD_TYPE)


@router.get(
    "/opensearch/collections.{fmt}",
    summary="OpenSearch collection search",
    response_class=Response,
    responses=FEED_RESPONSES,
)
async def collections(request: Request, pool: PoolDep, fmt: str) -> Response:
    """Collections by keyword, box, time or identifier (Atom or GeoJSON)."""
    settings: Settings = request.app.state.settings
    if fmt not in ("atom", "json"):
        return error_response(404, "NotFound", "collections are served as .atom or .json")
    try:
        query = Query(dict(request.query_params))
    except SearchError as exc:
        return error_response(400, "InvalidParameterValue", str(exc))
    criteria: dict[str, Any] = {}
    if query.q:
        criteria["q"] = query.q
    if query.bbox:
        criteria["bbox"] = query.bbox
    if query.datetime:
        criteria["datetime"] = query.datetime
    if query.uid:
        criteria["ids"] = [query.uid]
    shown = await records.visible(request, pool)
    page = await records.search(pool, shown, criteria, query.count, query.start_index - 1)
    url = f"{_base(settings)}/collections.{fmt}"
    links_of_page = _links_of(url, query, page.matched, fmt)
    summaries = [summarise(c, settings) for c in page.collections]
    if fmt == "json":
        return _geojson(
            {
                "type": "FeatureCollection",
                "totalResults": page.matched,
                "startIndex": query.start_index,
                "itemsPerPage": query.count,
                "links": links_of_page,
                "features": [
                    _collection_feature(s, c, settings)
                    for s, c in zip(summaries, page.collections, strict=True)
                ],
            }
        )
    entries = []
    for s in summaries:
        stac = s.resources[0].url
        begin = _stamp(s.begin) if s.begin else ""
        end = _stamp(s.end) if s.end else ""
        granules = f"{_base(settings)}?parentIdentifier={quote(s.identifier, safe='')}"
        csw = (
            f"{settings.public_url.rstrip('/')}/csw?service=CSW&version=2.0.2&request="
            f"GetRecordById&outputSchema=http://www.isotc211.org/2005/gmd&id="
            f"{quote(s.identifier, safe='')}"
        )
        links = [
            {
                "rel": "search",
                "type": OSDD_TYPE,
                "href": granules,
                "title": "Search the granules of this collection",
            },
            {
                "rel": "alternate",
                "type": "application/json",
                "href": stac,
                "title": "STAC collection",
            },
            {
                "rel": "alternate",
                "type": "application/vnd.iso.19139+xml",
                "href": csw,
                "title": "ISO 19139",
            },
        ]
        entries.append(
            "<entry>"
            + _entry_head(stac, s.title, _stamp(s.updated or datetime.now(UTC)), s.abstract)
            + atom.element("dc:identifier", s.identifier)
            + atom.element("dc:date", f"{begin}/{end}")
            + atom.place(list(s.bbox), None)
            + "".join(atom.empty("link", link) for link in links)
            + "</entry>"
        )
    head = _feed_head(f"{settings.title}: collections", query, page.matched, links_of_page)
    return _atom(atom.feed(head, links_of_page, entries))


def _collection_feature(s: Any, collection: dict[str, Any], settings: Settings) -> dict[str, Any]:
    west, south, east, north = s.bbox
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    granules = f"{_base(settings)}?parentIdentifier={quote(s.identifier, safe='')}"
    return {
        "type": "Feature",
        "id": s.identifier,
        "bbox": list(s.bbox),
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {
            "identifier": s.identifier,
            "title": s.title,
            "abstract": s.abstract,
            "date": f"{_stamp(s.begin) if s.begin else ''}/{_stamp(s.end) if s.end else ''}",
            "keywords": collection.get("keywords") or [],
            "links": {
                "search": [{"href": granules, "type": OSDD_TYPE}],
                "alternates": [{"href": s.resources[0].url, "type": "application/json"}],
            },
        },
    }


async def item_search(
    settings: Settings, request: Request, query: Query
) -> tuple[int, list[dict[str, Any]]]:
    """The STAC API's answer to the granule search: (numberMatched, items of the page)."""
    depth = query.start_index - 1 + query.count
    if depth > MAX_DEPTH:
        raise SearchError(
            f"startIndex + count may reach at most {MAX_DEPTH}: narrow the search by box or time"
        )
    params: dict[str, str] = {
        "collections": query.parent or "",
        "limit": str(max(depth, 1)),
        "count": "true",
    }
    if query.q:
        params["q"] = query.q
    if query.bbox:
        params["bbox"] = ",".join(str(v) for v in query.bbox)
    if query.datetime:
        params["datetime"] = query.datetime
    if query.uid:
        params["ids"] = query.uid
    client: StacApiClient = request.app.state.stac_api
    answer = await client.get(f"/search?{urlencode(params)}")
    if answer.status == 400:
        description = orjson.loads(answer.body).get("description")
        raise SearchError(description or "the STAC API refused the search")
    if answer.status != 200 or answer.content_encoding not in ("", "identity"):
        raise CatalogUnavailable(f"the STAC API answered {answer.status}")
    body = orjson.loads(answer.body)
    return int(body.get("numberMatched", 0)), body["features"][query.start_index - 1 : depth]


@router.get(
    "/opensearch/granules.{fmt}",
    summary="OpenSearch granule search",
    response_class=Response,
    responses=FEED_RESPONSES,
)
async def granules(request: Request, pool: PoolDep, fmt: str) -> Response:
    """Granules of one collection (`parentIdentifier`) by box, time or identifier: the STAC
    API's item search, as Atom or GeoJSON."""
    settings: Settings = request.app.state.settings
    if fmt not in ("atom", "json"):
        return error_response(404, "NotFound", "granules are served as .atom or .json")
    try:
        query = Query(dict(request.query_params))
        if not query.parent:
            raise SearchError("parentIdentifier is required: search the collections first")
        shown = await records.visible(request, pool)
        if query.parent not in shown:
            return error_response(404, "NotFound", f"no collection {query.parent!r}")
        total, items = await item_search(settings, request, query)
    except SearchError as exc:
        return error_response(400, "InvalidParameterValue", str(exc))
    except CatalogUnavailable as exc:
        # CEOS OpenSearch BP-017's codes: 504 when the search ran out of time, else 503.
        logger.warning("granule search: %s", exc)
        if exc.timed_out:
            return error_response(
                504, "GatewayTimeout", "the node's STAC API did not answer in time"
            )
        return error_response(
            503, "ServiceUnavailable", "the node's STAC API is unavailable", {"Retry-After": "5"}
        )
    url = f"{_base(settings)}/granules.{fmt}"
    links = _links_of(url, query, total, fmt)
    if fmt == "json":
        return _geojson(
            {
                "type": "FeatureCollection",
                "totalResults": total,
                "startIndex": query.start_index,
                "itemsPerPage": query.count,
                "links": links,
                "features": items,
            }
        )
    head = _feed_head(f"Granules of {query.parent}", query, total, links)
    return _atom(atom.feed(head, links, (_granule_entry(item) for item in items)))


def _granule_entry(item: dict[str, Any]) -> str:
    """One granule (a STAC item) as an Atom entry (BP-013..016), in one template: a page's
    entries are most of a granule search's own time."""
    e = atom.escape
    props = item.get("properties") or {}
    self_href = next(
        (link["href"] for link in item.get("links", []) if link.get("rel") == "self"), item["id"]
    )
    start = props.get("start_datetime") or props.get("datetime") or ""
    end = props.get("end_datetime") or props.get("datetime") or ""
    updated = props.get("updated") or props.get("datetime") or _stamp(datetime.now(UTC))
    summary = ", ".join(
        f"{k}: {props[k]}" for k in ("platform", "instruments", "eo:cloud_cover") if k in props
    )
    geometry = item.get("geometry") or {}
    ring = None
    if geometry.get("type") == "Polygon":
        ring = geometry["coordinates"][0]
    elif geometry.get("type") == "MultiPolygon":
        ring = geometry["coordinates"][0][0]
    place = atom.place(item["bbox"], ring) if item.get("bbox") else ""
    links = [
        f'<link rel="alternate" type="{GEOJSON_TYPE}" href="{e(self_href)}" title="STAC item"/>'
    ]
    assets = item.get("assets") or {}
    for key, asset in assets.items():
        if key == "thumbnail" or "thumbnail" in (asset.get("roles") or []):
            kind = asset.get("type", "image/png")
            links.append(f'<link rel="icon" type="{e(kind)}" href="{e(asset["href"])}"/>')
    data = [a for a in assets.values() if "data" in (a.get("roles") or [])] or list(assets.values())
    for asset in data:
        kind = asset.get("type", "application/octet-stream")
        extra = f' title="{e(asset["title"])}"' if asset.get("title") else ""
        if asset.get("file:size"):
            extra += f' length="{e(asset["file:size"])}"'
        links.append(f'<link rel="enclosure" type="{e(kind)}" href="{e(asset["href"])}"{extra}/>')
    return (
        f"<entry><id>{e(self_href)}</id><title>{e(props.get('title') or item['id'])}</title>"
        f'<updated>{e(updated)}</updated><summary type="text">{e(summary)}</summary>'
        f"<dc:identifier>{e(item['id'])}</dc:identifier><dc:date>{e(start)}/{e(end)}</dc:date>"
        f"{place}{''.join(links)}</entry>"
    )
