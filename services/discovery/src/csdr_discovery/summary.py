"""What a STAC collection says about itself to catalogue harvesters: title, abstract, extent,
GCMD keywords, legal constraints and the places it is served (the STAC collection and its items,
its OpenSearch description, the WMTS capabilities and XYZ templates of its mosaic). Every output
format (ISO 19139, Dublin Core) is written from this one reading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from csdr_discovery.settings import Settings
from csdr_render.links import collection_map_links

GCMD_PLATFORMS = "https://gcmd.earthdata.nasa.gov/kms/concepts/concept_scheme/platforms"
GCMD_INSTRUMENTS = "https://gcmd.earthdata.nasa.gov/kms/concepts/concept_scheme/instruments"
GCMD_SCIENCE = "https://gcmd.earthdata.nasa.gov/kms/concepts/concept_scheme/sciencekeywords"


@dataclass(frozen=True)
class OnlineResource:
    """One place the collection is served; `protocol` as catalogues name it (OGC:WMTS ...)."""

    url: str
    protocol: str
    name: str
    description: str
    function: str = "information"


@dataclass(frozen=True)
class Summary:
    """A collection as discovery describes it."""

    identifier: str
    title: str
    abstract: str
    bbox: tuple[float, float, float, float]
    begin: datetime | None
    end: datetime | None
    keywords: list[str]
    platforms: list[str]
    instruments: list[str]
    science_keywords: list[str]
    license: str
    rights: str
    updated: datetime | None
    resources: list[OnlineResource] = field(default_factory=list)


def _when(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _strings(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value if v not in (None, "")]
    return [str(value)] if value not in (None, "") else []


def _bbox(collection: dict[str, Any]) -> tuple[float, float, float, float]:
    boxes = collection.get("extent", {}).get("spatial", {}).get("bbox") or [[-180, -90, 180, 90]]
    box = boxes[0]
    if len(box) == 6:  # 3-D: drop the heights
        box = [box[0], box[1], box[3], box[4]]
    return (float(box[0]), float(box[1]), float(box[2]), float(box[3]))


def summarise(collection: dict[str, Any], settings: Settings) -> Summary:
    """Read a pgSTAC collection document for discovery."""
    cid = str(collection["id"])
    summaries = collection.get("summaries") or {}
    interval = (collection.get("extent", {}).get("temporal", {}).get("interval") or [[None, None]])[
        0
    ]
    keywords = _strings(collection.get("keywords"))
    science = [k for k in keywords if ">" in k]
    license_id = str(collection.get("license") or "")
    rights = settings.legal_constraints
    if license_id and license_id not in ("other", "proprietary", "various"):
        rights = f"License: {license_id}. {rights}"
    return Summary(
        identifier=cid,
        title=str(collection.get("title") or cid),
        abstract=str(collection.get("description") or ""),
        bbox=_bbox(collection),
        begin=_when(interval[0] if interval else None),
        end=_when(interval[1] if len(interval) > 1 else None),
        keywords=[k for k in keywords if ">" not in k],
        platforms=_strings(summaries.get("platform")),
        instruments=_strings(summaries.get("instruments")),
        science_keywords=science,
        license=license_id,
        rights=rights,
        updated=_when(collection.get("updated")),
        resources=_resources(collection, settings),
    )


def _resources(collection: dict[str, Any], settings: Settings) -> list[OnlineResource]:
    cid = quote(str(collection["id"]), safe="")
    stac = f"{settings.catalog_url.rstrip('/')}/collections/{cid}"
    resources = [
        OnlineResource(
            stac, "WWW:LINK", "STAC collection", "The STAC collection (application/json)"
        ),
        OnlineResource(
            f"{stac}/items",
            "WWW:LINK",
            "STAC items",
            "The collection's scenes as a STAC item search (application/geo+json)",
            "search",
        ),
    ]
    resources.append(
        OnlineResource(
            f"{settings.public_url.rstrip('/')}/opensearch?parentIdentifier={cid}",
            "OpenSearch",
            "OpenSearch description",
            "CEOS OpenSearch granule search of this collection "
            "(application/opensearchdescription+xml)",
            "search",
        )
    )
    if settings.tiler_url:
        for link in collection_map_links(settings.tiler_url, collection):
            if link["rel"] == "wmts":
                resources.append(
                    OnlineResource(
                        link["href"], "OGC:WMTS", "WMTS capabilities", link["title"], "browse"
                    )
                )
            elif link["rel"] == "xyz":
                resources.append(
                    OnlineResource(link["href"], "XYZ", "XYZ tiles", link["title"], "browse")
                )
    return resources
