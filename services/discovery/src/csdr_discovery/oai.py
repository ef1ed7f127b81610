"""OAI-PMH 2.0 at `/oai`: Identify, ListMetadataFormats, ListSets, ListIdentifiers, ListRecords
and GetRecord over the collections ever shown to anonymous callers, ordered by their last change
(migration 0016). A collection deleted or hidden since is a deleted header, kept for good
(`deletedRecord=persistent`). Resumption tokens carry the last record's key, so a harvest resumes
after it whatever changed in between (a record changed meanwhile comes again at the end).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import Response
from lxml import etree

from csdr_discovery import iso19139, records
from csdr_discovery.dublin_core import OAI_DC, oai_dc
from csdr_discovery.settings import Settings
from csdr_discovery.summary import summarise
from csdr_service.pools import PoolDep

OAI = "http://www.openarchives.org/OAI/2.0/"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
GRANULARITY = "YYYY-MM-DDThh:mm:ssZ"
FORMATS = {
    "oai_dc": ("http://www.openarchives.org/OAI/2.0/oai_dc.xsd", OAI_DC),
    "iso19139": ("http://www.isotc211.org/2005/gmd/gmd.xsd", iso19139.NAMESPACE),
}
VERBS = {  # verb -> (required arguments, optional arguments)
    "Identify": (set(), set()),
    "ListMetadataFormats": (set(), {"identifier"}),
    "ListSets": (set(), {"resumptionToken"}),
    "ListIdentifiers": ({"metadataPrefix"}, {"from", "until", "set", "resumptionToken"}),
    "ListRecords": ({"metadataPrefix"}, {"from", "until", "set", "resumptionToken"}),
    "GetRecord": ({"identifier", "metadataPrefix"}, set()),
}

router = APIRouter(tags=["OAI-PMH"])
# OAI-PMH answers 200 with an OAI-PMH document, its protocol errors included (OpenAPI).
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "An OAI-PMH 2.0 document: the verb's answer or an <error> element",
        "content": {"text/xml": {"schema": {"type": "string"}}},
    }
}


class OaiError(Exception):
    """An OAI-PMH error condition (`code` from the protocol: badArgument, badVerb ...)."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code, self.text = code, text


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _moment(value: str, name: str, end: bool) -> datetime:
    """A `from`/`until` argument: a day or a UTC second; `until` includes its whole day or
    second, so it becomes the first instant after it."""
    try:
        if len(value) == 10:
            start = datetime.combine(date.fromisoformat(value), time(), tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        if not value.endswith("Z") or len(value) != 20:
            raise ValueError
        moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise OaiError(
            "badArgument", f"{name} must be YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ, not {value!r}"
        ) from None
    return moment + timedelta(seconds=1) if end else moment


class Harvest:
    """What a list request asks for: a format, a time window and where the last page ended."""

    def __init__(
        self,
        prefix: str,
        since: str | None,
        until: str | None,
        after: tuple[str, str] | None = None,
        cursor: int = 0,
    ) -> None:
        if prefix not in FORMATS:
            raise OaiError("cannotDisseminateFormat", f"metadataPrefix {prefix!r} is unknown")
        self.prefix, self.since, self.until, self.after, self.cursor = (
            prefix,
            since,
            until,
            after,
            cursor,
        )
        self.since_at = _moment(since, "from", end=False) if since else None
        self.until_at = _moment(until, "until", end=True) if until else None
        if since and until and len(since) != len(until):
            raise OaiError("badArgument", "from and until must have the same granularity")
        if self.since_at and self.until_at and self.until_at <= self.since_at:
            raise OaiError("noRecordsMatch", "until is before from")

    def token(self, last: records.Change, cursor: int) -> str:
        """The resumption token of the page after `last`."""
        state = [
            self.prefix,
            self.since,
            self.until,
            last.changed_at.isoformat(),
            last.collection,
            cursor,
        ]
        return base64.urlsafe_b64encode(json.dumps(state).encode()).decode()

    @classmethod
    def resume(cls, token: str) -> Harvest:
        """The harvest a resumption token continues."""
        try:
            prefix, since, until, at, cid, cursor = json.loads(base64.urlsafe_b64decode(token))
            datetime.fromisoformat(at)
            return cls(prefix, since, until, (at, cid), int(cursor))
        except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
            raise OaiError("badResumptionToken", "the resumptionToken is not one of ours") from None


def _envelope(request: Request, args: dict[str, str]) -> tuple[etree._Element, str]:
    settings: Settings = request.app.state.settings
    root = etree.Element(f"{{{OAI}}}OAI-PMH", nsmap={None: OAI, "xsi": XSI})
    root.set(
        f"{{{XSI}}}schemaLocation",
        f"{OAI} http://www.openarchives.org/OAI/2.0/OAI-PMH.xsd",
    )
    etree.SubElement(root, f"{{{OAI}}}responseDate").text = _stamp(datetime.now(UTC))
    base_url = f"{settings.public_url.rstrip('/')}/oai"
    req = etree.SubElement(root, f"{{{OAI}}}request", args)
    req.text = base_url
    return root, base_url


def _xml(root: etree._Element, parts: list[bytes] | None = None) -> Response:
    body = iso19139.serialise(root, parts or [])
    return Response(body, media_type="text/xml; charset=utf-8")


def _identifier(settings: Settings, collection: str) -> str:
    return f"oai:{settings.oai_repository_id}:{collection}"


def _collection_of(settings: Settings, identifier: str) -> str:
    prefix = f"oai:{settings.oai_repository_id}:"
    if not identifier.startswith(prefix) or len(identifier) == len(prefix):
        raise OaiError("idDoesNotExist", f"no record {identifier!r} in this repository")
    return identifier[len(prefix) :]


def _header(parent: etree._Element, settings: Settings, change: records.Change) -> None:
    attrib = {"status": "deleted"} if change.content is None else {}
    header = etree.SubElement(parent, f"{{{OAI}}}header", attrib)
    etree.SubElement(header, f"{{{OAI}}}identifier").text = _identifier(settings, change.collection)
    etree.SubElement(header, f"{{{OAI}}}datestamp").text = _stamp(change.changed_at)


def _record(
    parent: etree._Element,
    request: Request,
    parts: list[bytes],
    change: records.Change,
    prefix: str,
) -> None:
    settings: Settings = request.app.state.settings
    record = etree.SubElement(parent, f"{{{OAI}}}record")
    _header(record, settings, change)
    if change.content is None:
        return
    metadata = etree.SubElement(record, f"{{{OAI}}}metadata")
    if prefix == "oai_dc":
        metadata.append(oai_dc(summarise(change.content, settings)))
    else:
        iso19139.placeholder(metadata, parts, request.app.state.iso.xml(change.content))


def _check_args(verb: str, args: dict[str, str]) -> None:
    required, optional = VERBS[verb]
    given = set(args) - {"verb"}
    unknown = given - required - optional
    if unknown:
        raise OaiError("badArgument", f"{verb} takes no {', '.join(sorted(unknown))}")
    if "resumptionToken" in given:
        if given != {"resumptionToken"}:
            raise OaiError("badArgument", "resumptionToken is exclusive: give it alone")
        return
    missing = required - given
    if missing:
        raise OaiError("badArgument", f"{verb} needs {', '.join(sorted(missing))}")


@dataclass(frozen=True)
class Verb:
    """One verb being answered: the request, its arguments, the element its answer goes into,
    and the serialised ISO records spliced in after it (iso19139.serialise)."""

    body: etree._Element
    request: Request
    pool: Any
    settings: Settings
    args: dict[str, str]
    base_url: str
    parts: list[bytes]


async def answer(request: Request, pool: Any, args: dict[str, str]) -> Response:
    """Answer one OAI-PMH request given its arguments."""
    settings: Settings = request.app.state.settings
    verb = args.get("verb", "")
    valid = verb in VERBS
    parts: list[bytes] = []  # ISO records, spliced in as serialised (iso19139.serialise)
    try:
        if not valid:
            raise OaiError(
                "badVerb",
                f"verb {verb!r} is not an OAI-PMH verb" if verb else "the verb argument is missing",
            )
        _check_args(verb, args)
        root, base_url = _envelope(request, args)
        body = etree.SubElement(root, f"{{{OAI}}}{verb}")
        await VERB_HANDLERS[verb](Verb(body, request, pool, settings, args, base_url, parts))
    except OaiError as exc:
        root, _ = _envelope(request, args if valid else {})
        etree.SubElement(root, f"{{{OAI}}}error", code=exc.code).text = exc.text
        parts = []
    return _xml(root, parts)


async def _identify(v: Verb) -> None:
    earliest = await records.earliest_change(v.pool)
    for tag, text in (
        ("repositoryName", v.settings.title),
        ("baseURL", v.base_url),
        ("protocolVersion", "2.0"),
        ("adminEmail", v.settings.contact_email or v.settings.admin_email),
        ("earliestDatestamp", _stamp(earliest or datetime.now(UTC))),
        ("deletedRecord", "persistent"),
        ("granularity", GRANULARITY),
    ):
        etree.SubElement(v.body, f"{{{OAI}}}{tag}").text = text


async def _list_formats(v: Verb) -> None:
    if "identifier" in v.args:
        await _one(v)
    for prefix, (schema, namespace) in FORMATS.items():
        fmt = etree.SubElement(v.body, f"{{{OAI}}}metadataFormat")
        etree.SubElement(fmt, f"{{{OAI}}}metadataPrefix").text = prefix
        etree.SubElement(fmt, f"{{{OAI}}}schema").text = schema
        etree.SubElement(fmt, f"{{{OAI}}}metadataNamespace").text = namespace


async def _list_sets(v: Verb) -> None:
    raise OaiError("noSetHierarchy", "this repository has no sets")


async def _one(v: Verb) -> records.Change:
    """The record the request's `identifier` names (idDoesNotExist when hidden or unknown)."""
    identifier = v.args["identifier"]
    collection = _collection_of(v.settings, identifier)
    shown = await records.visible(v.request, v.pool)
    found = await records.changes(v.pool, shown, collection=collection, limit=1)
    if not found:
        raise OaiError("idDoesNotExist", f"no record {identifier!r} in this repository")
    return found[0]


async def _get_record(v: Verb) -> None:
    if v.args["metadataPrefix"] not in FORMATS:
        raise OaiError(
            "cannotDisseminateFormat", f"metadataPrefix {v.args['metadataPrefix']!r} is unknown"
        )
    change = await _one(v)
    _record(v.body, v.request, v.parts, change, v.args["metadataPrefix"])


async def _list(v: Verb) -> None:
    if "resumptionToken" in v.args:
        harvest = Harvest.resume(v.args["resumptionToken"])
    else:
        if "set" in v.args:
            raise OaiError("noSetHierarchy", "this repository has no sets")
        harvest = Harvest(v.args["metadataPrefix"], v.args.get("from"), v.args.get("until"))
    after = (datetime.fromisoformat(harvest.after[0]), harvest.after[1]) if harvest.after else None
    shown = await records.visible(v.request, v.pool)
    page_size = v.settings.oai_page_size
    found = await records.changes(
        v.pool,
        shown,
        since=harvest.since_at,
        until=harvest.until_at,
        after=after,
        limit=page_size + 1,
    )
    if not found and harvest.after is None:
        raise OaiError("noRecordsMatch", "no record changed in this window")
    more = len(found) > page_size
    found = found[:page_size]
    for change in found:
        if v.body.tag == f"{{{OAI}}}ListIdentifiers":
            _header(v.body, v.settings, change)
        else:
            _record(v.body, v.request, v.parts, change, harvest.prefix)
    if more or harvest.after is not None:
        token = etree.SubElement(v.body, f"{{{OAI}}}resumptionToken", cursor=str(harvest.cursor))
        if more:
            token.text = harvest.token(found[-1], harvest.cursor + len(found))


VERB_HANDLERS = {
    "Identify": _identify,
    "ListMetadataFormats": _list_formats,
    "ListSets": _list_sets,
    "ListIdentifiers": _list,
    "ListRecords": _list,
    "GetRecord": _get_record,
}


@router.get("/oai", summary="OAI-PMH 2.0", response_class=Response, responses=RESPONSES)
async def oai_get(request: Request, pool: PoolDep) -> Response:
    """OAI-PMH requests as GET arguments (`verb=...`)."""
    args = dict(request.query_params)
    if len(args) != len(request.query_params.multi_items()):
        return await _repeated(request, pool)
    return await answer(request, pool, args)


@router.post(
    "/oai", summary="OAI-PMH 2.0 (form-encoded)", response_class=Response, responses=RESPONSES
)
async def oai_post(request: Request, pool: PoolDep) -> Response:
    """OAI-PMH requests as an `application/x-www-form-urlencoded` body."""
    pairs = parse_qsl((await request.body()).decode("utf-8", "replace"))
    args = dict(pairs)
    if len(args) != len(pairs):
        return await _repeated(request, pool)
    return await answer(request, pool, args)


async def _repeated(request: Request, pool: Any) -> Response:
    root, _ = _envelope(request, {})
    etree.SubElement(root, f"{{{OAI}}}error", code="badArgument").text = "an argument is repeated"
    return _xml(root)
