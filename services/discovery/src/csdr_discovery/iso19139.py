"""Collections as ISO 19139 (`gmd:MD_Metadata`) records, written by pygeometa's ISO 19139
template from a metadata control file (MCF) built from the collection's summary.

pygeometa's `render_j2_template` builds a Jinja2 environment and compiles the template on every
call; the environment here is built once, with the same loader, filters and globals. Writing a
record still costs ~3 ms (template, parse, serialisation), so `IsoRecords` keeps each record's
bytes keyed by the collection document it was written from: a changed collection is a new key,
so a kept record is never older than its source. Protocol documents splice the bytes in
(`serialise`) instead of parsing them back.
"""

from __future__ import annotations

import pathlib
import re
from collections import OrderedDict
from functools import cache
from typing import Any

import orjson
from jinja2 import Environment, FileSystemLoader, Template
from lxml import etree
from pygeometa import core
from pygeometa.schemas.iso19139 import ISO19139OutputSchema

from csdr_discovery.settings import Settings
from csdr_discovery.summary import (
    GCMD_INSTRUMENTS,
    GCMD_PLATFORMS,
    GCMD_SCIENCE,
    Summary,
    summarise,
)

NAMESPACE = "http://www.isotc211.org/2005/gmd"
PLACEHOLDER = re.compile(rb"<!--csdr-record-(\d+)-->")


@cache
def _template() -> Template:
    template_dir = pathlib.Path(ISO19139OutputSchema().template_dir)
    env = Environment(loader=FileSystemLoader([template_dir, core.SCHEMAS]))
    env.filters["normalize_datestring"] = core.normalize_datestring
    env.filters["get_distribution_language"] = core.get_distribution_language
    env.filters["get_charstring"] = core.get_charstring
    env.filters["prune_distribution_formats"] = core.prune_distribution_formats
    env.filters["prune_transfer_option"] = core.prune_transfer_option
    env.globals.update(
        zip=zip,
        get_charstring=core.get_charstring,
        normalize_datestring=core.normalize_datestring,
        prune_distribution_formats=core.prune_distribution_formats,
        prune_transfer_option=core.prune_transfer_option,
    )
    return env.get_template("main.j2")


def _contact(settings: Settings) -> dict[str, Any]:
    return {
        "organization": settings.organisation,
        "url": settings.organisation_url or None,
        "email": settings.contact_email or None,
        "country": settings.country,
    }


def mcf(summary: Summary, settings: Settings) -> dict[str, Any]:
    """pygeometa's metadata control file for a collection."""
    keywords: dict[str, Any] = {}
    if summary.keywords:
        keywords["default"] = {"keywords": summary.keywords, "keywords_type": "theme"}
    for key, words, kind, name, url in (
        ("gcmd_platforms", summary.platforms, "platform", "GCMD Platforms", GCMD_PLATFORMS),
        (
            "gcmd_instruments",
            summary.instruments,
            "instrument",
            "GCMD Instruments",
            GCMD_INSTRUMENTS,
        ),
        ("gcmd_science", summary.science_keywords, "theme", "GCMD Science Keywords", GCMD_SCIENCE),
    ):
        if words:
            keywords[key] = {
                "keywords": words,
                "keywords_type": kind,
                "vocabulary": {"name": name, "url": url},
            }
    temporal = []
    if summary.begin or summary.end:
        temporal.append(
            {
                "begin": summary.begin.isoformat() if summary.begin else "",
                "end": summary.end.isoformat() if summary.end else "now",
            }
        )
    dates = {"revision": summary.updated.isoformat()} if summary.updated else {}
    contact = _contact(settings)
    stamp = summary.updated.isoformat() if summary.updated else "1970-01-01"
    return {
        "mcf": {"version": "1.0"},
        "metadata": {
            "identifier": summary.identifier,
            "language": "eng",
            "language_alternate": None,
            "charset": "utf8",
            "hierarchylevel": "series",
            "datestamp": stamp,
            "dataseturi": summary.resources[0].url,
        },
        "spatial": {"datatype": "grid", "geomtype": "raster"},
        "identification": {
            "language": "eng",
            "charset": "utf8",
            "title": summary.title,
            "abstract": summary.abstract,
            "dates": dates,
            "keywords": keywords,
            "topiccategory": ["imageryBaseMapsEarthCover"],
            "extents": {
                "spatial": [{"bbox": list(summary.bbox), "crs": 4326}],
                "temporal": temporal,
            },
            "accessconstraints": "otherRestrictions",
            "rights": summary.rights,
            "license": {"name": summary.license or "other", "url": ""},
            "url": summary.resources[0].url,
            "status": "onGoing",
            "maintenancefrequency": "continual",
        },
        "contact": {"originator": contact, "pointOfContact": contact, "distributor": contact},
        "distribution": {
            f"r{i}": {
                "url": r.url,
                "type": r.protocol,
                "name": r.name,
                "description": r.description,
                "function": r.function,
            }
            for i, r in enumerate(summary.resources)
        },
    }


def record(summary: Summary, settings: Settings) -> etree._Element:
    """The `gmd:MD_Metadata` element of a collection."""
    xml = _template().render(record=mcf(summary, settings), pygeometa_version=core.VERSION)
    parser = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True)
    return etree.fromstring(xml.encode(), parser)


class IsoRecords:
    """The ISO 19139 bytes of collections, each written once per distinct collection document
    (at most `size` kept, least recently used dropped first)."""

    def __init__(self, settings: Settings, size: int = 4096) -> None:
        self.settings = settings
        self.size = size
        self._kept: OrderedDict[bytes, bytes] = OrderedDict()

    def xml(self, collection: dict[str, Any]) -> bytes:
        """The record of `collection` as serialised XML (no declaration)."""
        key = orjson.dumps(collection, option=orjson.OPT_SORT_KEYS)
        found = self._kept.get(key)
        if found is not None:
            self._kept.move_to_end(key)
            return found
        element = record(summarise(collection, self.settings), self.settings)
        value = etree.tostring(element, encoding="UTF-8", xml_declaration=False)
        self._kept[key] = value
        if len(self._kept) > self.size:
            self._kept.popitem(last=False)
        return value


def placeholder(parent: etree._Element, parts: list[bytes], part: bytes) -> None:
    """Mark where `part` goes inside `parent` (see `serialise`)."""
    parent.append(etree.Comment(f"csdr-record-{len(parts)}"))
    parts.append(part)


def serialise(root: etree._Element, parts: list[bytes]) -> bytes:
    """`root` as an XML document with each placeholder replaced by its record's bytes."""
    body = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    if not parts:
        return body
    return PLACEHOLDER.sub(lambda m: parts[int(m.group(1))], body)  # one pass over the body
