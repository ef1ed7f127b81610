"""What a receiver gets: a CloudEvents 1.0 JSON (structured mode) whose data is the STAC item with
links to the node's API and tiles, signed per Standard Webhooks (webhook-id, webhook-timestamp,
webhook-signature) with the subscription's secret. The webhook-id is the delivery id: the same on
every retry, so a receiver can drop duplicates.

https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/formats/json-format.md
https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
"""

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from standardwebhooks import Webhook

from csdr_push.settings import Settings
from csdr_render.links import MAP_RELS, item_map_links

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
EVENT_TYPES = {"created": "org.csdr.item.created", "updated": "org.csdr.item.updated"}


def item_url(settings: Settings, collection: str, item_id: str) -> str:
    """The item in this node's STAC API."""
    return f"{settings.catalog_url}/collections/{quote(collection)}/items/{quote(item_id)}"


def item_links(item: Mapping[str, Any], settings: Settings) -> list[dict[str, Any]]:
    """Links to the item, its collection and, when it has a raster, its map layers."""
    collection, item_id = str(item["collection"]), str(item["id"])
    links = [
        {
            "rel": "self",
            "href": item_url(settings, collection, item_id),
            "type": "application/geo+json",
        },
        {
            "rel": "collection",
            "href": f"{settings.catalog_url}/collections/{quote(collection)}",
            "type": "application/json",
        },
    ]
    return links + item_map_links(settings.tiler_url, item)


def with_links(item: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """The item with this node's links in place of the stored self/collection/root links."""
    kept = [
        link
        for link in item.get("links") or []
        if link.get("rel") not in ("self", "collection", "root", "parent", *MAP_RELS)
    ]
    return {**item, "links": item_links(item, settings) + kept}


def cloud_event(delivery: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """The CloudEvent for a claimed delivery (an item event or a test event)."""
    if delivery["payload"] is not None:  # a test event
        return {
            "specversion": "1.0",
            "id": str(delivery["id"]),
            "source": settings.catalog_url,
            "type": delivery["type"],
            "time": _rfc3339(delivery["created_at"]),
            "datacontenttype": "application/json",
            "data": delivery["payload"],
        }
    item = delivery["item"]
    return {
        "specversion": "1.0",
        "id": str(delivery["id"]),
        "source": f"{settings.catalog_url}/collections/{quote(delivery['collection'])}",
        "type": EVENT_TYPES[delivery["type"]],
        "subject": delivery["item_id"],
        "time": _rfc3339(delivery["event_time"]),
        "datacontenttype": "application/geo+json",
        "dataschema": "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json",
        "data": with_links(item, settings),
    }


def body(event: Mapping[str, Any]) -> str:
    """The exact text that is signed and sent."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def signed_headers(secret: str, msg_id: str, payload: str, at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers for one attempt at time `at`."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, payload),
        "content-type": CONTENT_TYPE,
    }


def now() -> datetime:
    """The attempt time (UTC)."""
    return datetime.now(UTC)


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
