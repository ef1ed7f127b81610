"""A subscription's Atom feed (RFC 4287): the latest items it matched, newest first, for
consumers that pull instead of receiving webhooks."""

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg
from lxml import etree

from csdr_access.links import with_key
from csdr_push import events
from csdr_push.settings import Settings

ATOM = "http://www.w3.org/2005/Atom"
MEDIA_TYPE = "application/atom+xml"


async def latest_matches(
    conn: asyncpg.Connection, subscription_id: uuid.UUID, limit: int
) -> list[asyncpg.Record]:
    """The latest item events matched by a subscription whose collection its owner may see now
    (the rule deliveries follow), newest first."""
    return await conn.fetch(
        "SELECT e.id, e.type, e.collection, e.item_id, e.created_at, e.item"
        " FROM csdr.deliveries d JOIN csdr.item_events e ON e.id = d.event_id"
        " JOIN csdr.subscriptions s ON s.id = d.subscription_id"
        " WHERE d.subscription_id = $1 AND d.status <> 'withheld'"
        "  AND csdr.owner_may_see(s.owner, e.collection)"
        " ORDER BY e.id DESC LIMIT $2",
        subscription_id,
        limit,
    )


def render(
    subscription: Mapping[str, Any],
    matches: list[asyncpg.Record],
    self_url: str,
    settings: Settings,
    api_key: str | None = None,
) -> bytes:
    """The Atom document for a subscription and its latest matches; `api_key` (when the reader
    sent it as `?api_key=`, as QGIS does) is carried into the links, so they open too."""
    feed = etree.Element(f"{{{ATOM}}}feed", nsmap={None: ATOM})
    _text(feed, "id", f"urn:uuid:{subscription['id']}")
    _text(feed, "title", f"New scenes for subscription {subscription['id']}")
    newest = matches[0]["created_at"] if matches else subscription["created_at"]
    _text(feed, "updated", _rfc3339(newest))
    etree.SubElement(feed, f"{{{ATOM}}}link", rel="self", href=self_url, type=MEDIA_TYPE)
    author = etree.SubElement(feed, f"{{{ATOM}}}author")
    _text(author, "name", "CSDR node")
    for match in matches:
        _entry(feed, match, settings, api_key)
    return bytes(etree.tostring(feed, encoding="utf-8", xml_declaration=True))


def _with_key(url: str, api_key: str | None) -> str:
    return with_key(url, api_key) if api_key else url


def _entry(
    feed: etree._Element, match: asyncpg.Record, settings: Settings, api_key: str | None
) -> None:
    item = match["item"] or {}
    props = item.get("properties") or {}
    entry = etree.SubElement(feed, f"{{{ATOM}}}entry")
    _text(entry, "id", f"urn:csdr:event:{match['id']}")
    _text(entry, "title", f"{match['item_id']} ({match['type']})")
    _text(entry, "updated", _rfc3339(match["created_at"]))
    url = _with_key(events.item_url(settings, match["collection"], match["item_id"]), api_key)
    etree.SubElement(
        entry, f"{{{ATOM}}}link", rel="alternate", href=url, type="application/geo+json"
    )
    if item:
        for link in events.item_links(item, settings):
            if link["rel"] == "tilejson":
                etree.SubElement(
                    entry,
                    f"{{{ATOM}}}link",
                    rel="related",
                    href=_with_key(link["href"], api_key),
                    type=link["type"],
                )
    etree.SubElement(entry, f"{{{ATOM}}}category", term=match["collection"])
    facts = [f"acquired {props['datetime']}" if props.get("datetime") else None]
    if props.get("eo:cloud_cover") is not None:
        facts.append(f"cloud cover {props['eo:cloud_cover']}%")
    if props.get("platform"):
        facts.append(str(props["platform"]))
    _text(
        entry,
        "summary",
        f"{match['collection']}/{match['item_id']}: " + ", ".join(f for f in facts if f),
    )


def _text(parent: etree._Element, tag: str, text: str) -> None:
    etree.SubElement(parent, f"{{{ATOM}}}{tag}").text = text


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
