"""Atom feeds of OpenSearch answers (OpenSearch 1.1 response elements, GeoRSS, Dublin Core),
written as text: each element by one template, every value through `escape` (XML text and
double-quoted attributes; characters XML 1.0 forbids dropped). The namespaces are declared once,
on the feed, with the prefixes of the CEOS OpenSearch best practice.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping

ATOM = "http://www.w3.org/2005/Atom"
OS = "http://a9.com/-/spec/opensearch/1.1/"
DC = "http://purl.org/dc/elements/1.1/"
GEORSS = "http://www.georss.org/georss"
GEO = "http://a9.com/-/opensearch/extensions/geo/1.0/"
TIME = "http://a9.com/-/opensearch/extensions/time/1.0/"
EO = "http://a9.com/-/opensearch/extensions/eo/1.0/"
PREFIXES = {OS: "os", DC: "dc", GEORSS: "georss", GEO: "geo", TIME: "time", EO: "eo"}
_DECLARATIONS = f'xmlns="{ATOM}" ' + " ".join(f'xmlns:{p}="{ns}"' for ns, p in PREFIXES.items())
# Characters XML 1.0 does not allow anywhere (https://www.w3.org/TR/xml/#charsets).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def escape(value: object) -> str:
    """`value` as XML character data, safe in text and in double-quoted attributes."""
    text = str(value)
    if not text.isprintable():  # a fast test first: controls are not printable
        text = _NOT_XML.sub("", text)
    if "&" in text or "<" in text or ">" in text or '"' in text or "'" in text:
        return html.escape(text)
    return text


def element(name: str, text: object, attributes: Mapping[str, object] | None = None) -> str:
    """`<name a="..">text</name>`; `name` is a literal prefixed name (`dc:date`)."""
    attrs = "".join(f' {k}="{escape(v)}"' for k, v in (attributes or {}).items())
    return f"<{name}{attrs}>{escape(text)}</{name}>"


def empty(name: str, attributes: Mapping[str, object]) -> str:
    """`<name a=".."/>`."""
    attrs = "".join(f' {k}="{escape(v)}"' for k, v in attributes.items())
    return f"<{name}{attrs}/>"


def prefixed(clark: str) -> str:
    """A `{namespace}local` name as the feed's prefixed name (`geo:box`)."""
    if not clark.startswith("{"):
        return clark
    namespace, _, local = clark[1:].partition("}")
    return f"{PREFIXES[namespace]}:{local}"


def feed(head: Iterable[str], links: Iterable[Mapping[str, str]], entries: Iterable[str]) -> bytes:
    """The whole document: the feed's own elements, its links, then its entries."""
    body = "".join(
        [
            f"<?xml version='1.0' encoding='UTF-8'?>\n<feed {_DECLARATIONS}>",
            *head,
            *(empty("link", link) for link in links),
            *entries,
            "</feed>",
        ]
    )
    return body.encode("utf-8")


def place(bbox: list[float], ring: list[list[float]] | None) -> str:
    """georss:box (the one GEO DAB's FedEO mapper reads) and georss:polygon, latitude first."""
    west, south, east, north = bbox[0], bbox[1], bbox[-2], bbox[-1]
    text = element("georss:box", f"{south} {west} {north} {east}")
    if ring:
        text += element("georss:polygon", " ".join(f"{p[1]} {p[0]}" for p in ring))
    return text
