"""Delivery: an order's delivered scenes as a STAC ItemCollection whose data and metadata assets
are download links signed for the order's organisation and expiring with the order's links
(`expires`, default 14 days; `renew` sets a new expiry at no quota cost). A link is checked by its
signature (HMAC-SHA256 over order, organisation, item, asset and expiry), then its expiry: an
expired link answers 410 with a JSON problem, never a page. Thumbnails and overviews point at the
catalog, which serves them under the item's own access rule. A scene's first download by an
organisation in a period is one `downloaded` row of the ledger."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import asyncpg

from csdr_access import charging
from csdr_access.periods import iso
from csdr_catalog.downloads import AssetRoots, download_url
from csdr_orders import events
from csdr_orders.errors import LinkExpired, LinkInvalid, OrderNotFound
from csdr_orders.settings import Settings

BROWSE_ROLES = frozenset({"thumbnail", "overview"})


class Signer:
    """Signs and checks delivery links with one secret."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("delivery links need a signing secret")
        self.key = secret.encode()

    def signature(self, link: Link) -> str:
        """The link's signature (hex)."""
        message = "\n".join(
            [str(link.order_id), str(link.org_id), link.collection, link.item_id, link.asset]
            + [str(link.expires)]
        )
        return hmac.new(self.key, message.encode(), hashlib.sha256).hexdigest()

    def verify(self, link: Link, signature: str) -> bool:
        """Whether `signature` is the link's."""
        return hmac.compare_digest(self.signature(link).encode(), signature.encode())


@dataclass(frozen=True)
class Link:
    """What a delivery link names."""

    order_id: uuid.UUID
    org_id: int
    collection: str
    item_id: str
    asset: str
    expires: int
    """Expiry, seconds since the epoch."""

    def url(self, public_url: str, signer: Signer) -> str:
        """The signed URL of the link."""
        path = "/".join(quote(p, safe="") for p in (self.collection, self.item_id, self.asset))
        query = urlencode(
            {"org": self.org_id, "expires": self.expires, "signature": signer.signature(self)}
        )
        return f"{public_url}/orders/{self.order_id}/download/{path}?{query}"


def check(
    link: Link, signature: str, signer: Signer, now: datetime, caller_org: int | None
) -> None:
    """403 for a forged link or one another organisation presents, 410 once it expired."""
    if not signer.verify(link, signature):
        raise LinkInvalid("the download link's signature does not verify")
    if caller_org is not None and caller_org != link.org_id:
        raise LinkInvalid("this download link belongs to another organisation")
    expired = datetime.fromtimestamp(link.expires, UTC)
    if now >= expired:
        raise LinkExpired(
            f"this download link expired at {iso(expired)}; renew the order's links with"
            f" POST /orders/{link.order_id}/renew",
            expired_at=iso(expired),
            renew=f"/orders/{link.order_id}/renew",
        )


async def item_collection(
    conn: asyncpg.Connection,
    order: dict[str, Any],
    org_id: int,
    expires: datetime,
    settings: Settings,
    signer: Signer,
) -> dict[str, Any]:
    """The order's delivered scenes as a STAC ItemCollection with signed, expiring links."""
    order_id = uuid.UUID(order["id"])
    stamp = int(expires.timestamp())
    features = []
    for entry in order["items"]:
        if entry["status"] != "succeeded":
            continue
        item = await conn.fetchval(
            "SELECT pgstac.get_item($1, $2)", entry["id"], entry["collection"]
        )
        if item is None:
            continue
        for key, asset in (item.get("assets") or {}).items():
            if BROWSE_ROLES & set(asset.get("roles") or []):
                asset["href"] = download_url(
                    settings.catalog_url.rstrip("/") + "/", item["collection"], item["id"], key
                )
                continue
            link = Link(order_id, org_id, item["collection"], item["id"], key, stamp)
            asset["href"] = link.url(settings.public_url, signer)
            asset["expires"] = iso(expires)
        base = f"{settings.catalog_url}/collections/{quote(item['collection'], safe='')}"
        item["links"] = [
            {"rel": "collection", "href": base, "type": "application/json"},
            {
                "rel": "canonical",
                "href": f"{base}/items/{quote(item['id'], safe='')}",
                "type": "application/geo+json",
            },
            {"rel": "order", "href": events.order_url(settings.public_url, order_id)},
        ]
        features.append(item)
    url = events.order_url(settings.public_url, order_id)
    return {
        "type": "FeatureCollection",
        "features": features,
        "numberReturned": len(features),
        "links": [
            {"rel": "self", "href": f"{url}/items", "type": "application/geo+json"},
            {"rel": "order", "href": url, "type": "application/json"},
        ],
    }


async def file_for(conn: asyncpg.Connection, link: Link, roots: AssetRoots, at: datetime) -> str:
    """The file a valid link serves; the scene's first download is written to the ledger."""
    item = await conn.fetchrow(
        "SELECT i.*, o.org_id, o.period_start, o.id FROM csdr.order_items i"
        " JOIN csdr.orders o ON o.id = i.order_id"
        " WHERE i.order_id = $1 AND o.org_id = $2 AND i.collection = $3 AND i.item_id = $4"
        " AND i.status = 'succeeded'",
        link.order_id,
        link.org_id,
        link.collection,
        link.item_id,
    )
    if item is None:
        raise OrderNotFound(f"order {link.order_id} delivered no {link.collection}/{link.item_id}")
    stac = await conn.fetchval("SELECT pgstac.get_item($1, $2)", link.item_id, link.collection)
    asset = ((stac or {}).get("assets") or {}).get(link.asset)
    path = roots.resolve(str(asset.get("href"))) if isinstance(asset, dict) else None
    if path is None:
        raise OrderNotFound(f"{link.collection}/{link.item_id} has no file for asset {link.asset}")
    scene = charging.Download(
        link.org_id, link.collection, link.item_id, item["platform"], item["instrument"]
    )
    async with conn.transaction():
        await charging.mark_downloaded(conn, scene, item["period_start"], at)
    return path
