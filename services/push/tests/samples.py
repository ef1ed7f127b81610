"""The push tests' sample data: collection `gf1`, small STAC items in it, the webhook secret,
the organisations and their key scopes."""

from typing import Any

from tests.support import items
from tests.support.items import cog, square

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks spec's example


def stac_item(item_id: str, lon: float = 118.9, lat: float = 37.8, **props: Any) -> dict[str, Any]:
    """A small STAC item: a 0.1 degree square at lon, lat with the given properties."""
    properties = {"datetime": "2024-05-12T02:46:00Z", "platform": "GF-1", **props}
    assets = {"data": cog(f"/data/{item_id}.tif")}
    return items.stac_item(item_id, "gf1", square(lon, lat, 0.1), properties, assets)


COLLECTION = {
    "type": "Collection",
    "stac_version": "1.1.0",
    "id": "gf1",
    "description": "GF-1 scenes",
    "license": "other",
    "links": [],
    "extent": {
        "spatial": {"bbox": [[-180, -90, 180, 90]]},
        "temporal": {"interval": [[None, None]]},
    },
}


ORGS = {  # who -> (organisation, country, kind, scopes)
    "partner A": ("GISTDA", "TH", "partner", ["read"]),
    "partner B": ("KenSpace", "KE", "partner", ["read"]),
    "admin": ("CRESDA", "CN", "main", ["admin"]),
    "registered": ("UNOOSA", "AT", "agency", ["read"]),
}
