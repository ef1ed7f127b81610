"""The push tests' sample data: collection `gf1`, small STAC items in it, the webhook secret,
the organisations and their key scopes."""

from typing import Any

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks spec's example


def stac_item(item_id: str, lon: float = 118.9, lat: float = 37.8, **props: Any) -> dict[str, Any]:
    """A small STAC item: a 0.1 degree square at lon, lat with the given properties."""
    ring = [[lon, lat], [lon + 0.1, lat], [lon + 0.1, lat + 0.1], [lon, lat + 0.1], [lon, lat]]
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": item_id,
        "collection": "gf1",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": [lon, lat, lon + 0.1, lat + 0.1],
        "properties": {"datetime": "2024-05-12T02:46:00Z", "platform": "GF-1", **props},
        "links": [],
        "assets": {
            "data": {
                "href": f"/data/{item_id}.tif",
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "roles": ["data"],
            }
        },
    }


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
