"""One STAC collection per satellite and sensor family (`gf1-wfv`, `gf2-pms`, ...), created on
first ingest with what GEOSS and CEOS best practice ask of collection metadata: title, description,
license and data-policy link, providers, GCMD platform and instrument keywords, summaries,
item_assets and render presets. Its extent grows with every item (pgstac.publish_item)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from csdr_ingest.cresda.bands import Band
from csdr_ingest.cresda.metadata import sensor_family
from csdr_ingest.settings import Settings

STAC_EXTENSIONS = {
    "eo": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "projection": "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "view": "https://stac-extensions.github.io/view/v1.0.0/schema.json",
    "sat": "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "processing": "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
    "item-assets": "https://stac-extensions.github.io/item-assets/v1.0.0/schema.json",
    "render": "https://stac-extensions.github.io/render/v2.0.0/schema.json",
}


@dataclass(frozen=True)
class Platform:
    """A satellite: STAC platform and constellation, GCMD platform keyword, who operates it."""

    platform: str
    constellation: str
    gcmd: str
    title: str


# STAC `platform` is the satellite's CEOS/WMO OSCAR name in STAC's lower-case style (`gf-2`,
# `zy-3-02`, `cbers-4`), `constellation` the programme (gaofen, ziyuan, cbers, huanjing): the names
# GEOSS and other STAC catalogues of these satellites match on. `gcmd` is the GCMD Platforms short
# name. Keys are CRESDA/LASAC SatelliteIDs with dashes removed (`CBERS-04` -> `CBERS04`); the
# migration infra/db/migrations/0015_platform_vocabulary.sql renames stored items the same way.
CBERS4 = Platform("cbers-4", "cbers", "CBERS-4", "CBERS-4")
ZY1_02D = Platform("zy-1-02d", "ziyuan", "ZY-1-02D", "Ziyuan-1 02D")
PLATFORMS = {
    "GF1": Platform("gf-1", "gaofen", "GF-1", "Gaofen-1"),
    "GF1B": Platform("gf-1b", "gaofen", "GF-1B", "Gaofen-1B"),
    "GF1C": Platform("gf-1c", "gaofen", "GF-1C", "Gaofen-1C"),
    "GF1D": Platform("gf-1d", "gaofen", "GF-1D", "Gaofen-1D"),
    "GF2": Platform("gf-2", "gaofen", "GF-2", "Gaofen-2"),
    "GF3": Platform("gf-3", "gaofen", "GF-3", "Gaofen-3"),
    "GF4": Platform("gf-4", "gaofen", "GF-4", "Gaofen-4"),
    "GF5": Platform("gf-5", "gaofen", "GF-5", "Gaofen-5"),
    "GF6": Platform("gf-6", "gaofen", "GF-6", "Gaofen-6"),
    "GF7": Platform("gf-7", "gaofen", "GF-7", "Gaofen-7"),
    # LASAC writes `ZY3` for the first ZY-3 satellite, `ZY302`/`ZY303` for the later ones.
    "ZY3": Platform("zy-3-01", "ziyuan", "ZY-3", "Ziyuan-3 01"),
    "ZY301": Platform("zy-3-01", "ziyuan", "ZY-3", "Ziyuan-3 01"),
    "ZY302": Platform("zy-3-02", "ziyuan", "ZY-3 02", "Ziyuan-3 02"),
    "ZY303": Platform("zy-3-03", "ziyuan", "ZY-3 03", "Ziyuan-3 03"),
    "ZY02C": Platform("zy-1-02c", "ziyuan", "ZY-1-02C", "Ziyuan-1 02C"),
    # CRESDA names ZY-1 02D `ZY1E` in its files.
    "ZY1E": ZY1_02D,
    "ZY102D": ZY1_02D,
    "CBERS4": CBERS4,
    "CBERS04": CBERS4,
    "CB04": CBERS4,
    "CBERS04A": Platform("cbers-4a", "cbers", "CBERS-4A", "CBERS-4A"),
    "CB04A": Platform("cbers-4a", "cbers", "CBERS-4A", "CBERS-4A"),
    "HJ1A": Platform("hj-1a", "huanjing", "HJ-1A", "Huanjing-1A"),
    "HJ1B": Platform("hj-1b", "huanjing", "HJ-1B", "Huanjing-1B"),
}
# The programme of a SatelliteID not in PLATFORMS, by its leading letters.
CONSTELLATIONS = {"GF": "gaofen", "ZY": "ziyuan", "CB": "cbers", "CBERS": "cbers", "HJ": "huanjing"}
# Instrument families: GCMD instrument short name and a title.
INSTRUMENTS = {
    "WFV": ("WFV", "Wide Field of View camera"),
    "PMS": ("PMS", "Panchromatic and Multispectral camera"),
    "CCD": ("CCD", "Charge-Coupled Device camera"),
    "MUX": ("MUXCAM", "Multispectral camera"),
    "PAN": ("PANMUX", "Panchromatic and multispectral camera"),
    "WFI": ("WFI", "Wide Field Imager"),
    "HRC": ("HRC", "High Resolution camera"),
    "VNIC": ("VNIC", "Visible and Near-Infrared camera"),
    "IRS": ("IRSCAM", "Infrared Medium Resolution Scanner"),
    "TMS": ("TLC", "Three-line stereo mapping camera"),
    "DLC": ("DLC", "Dual-line stereo camera"),
    # ZY-3's three-line camera views, delivered by LASAC as separate products.
    "NAD": ("TLC", "Three-line camera, nadir view"),
    "FWD": ("TLC", "Three-line camera, forward view"),
    "BWD": ("TLC", "Three-line camera, backward view"),
}


def platform_of(satellite: str) -> Platform:
    """The platform of a CRESDA SatelliteID; an unknown one is written in the same style
    (`GF9` -> `gf-9` in constellation gaofen, `XY12` -> `xy-12`)."""
    key = satellite.upper().replace("-", "")
    known = PLATFORMS.get(key)
    if known:
        return known
    match = re.fullmatch(r"([A-Z]+)(\d.*)", key)
    if match is None:
        return Platform(satellite.lower(), satellite.lower(), satellite, satellite)
    letters, rest = match.groups()
    constellation = CONSTELLATIONS.get(letters, letters.lower())
    name = f"{letters}-{rest}"
    return Platform(name.lower(), constellation, name, name)


def collection_id(satellite: str, sensor: str) -> str:
    """`gf1-wfv`, `gf2-pms`, `hj1a-ccd`."""
    return f"{satellite.lower()}-{sensor_family(sensor).lower()}"


def _band_summary(bands: tuple[Band, ...]) -> list[dict[str, Any]]:
    return [
        {
            "name": b.name,
            "common_name": b.common_name,
            "center_wavelength": b.center_wavelength,
            "full_width_half_max": b.full_width_half_max,
        }
        for b in bands
    ]


def collection_for(
    satellite: str,
    sensor: str,
    part_bands: dict[str, tuple[Band, ...]],
    gsds: list[float],
    settings: Settings,
    renders: dict[str, Any],
    thumbnail_type: str = "image/png",
) -> dict[str, Any]:
    """The collection a product of `satellite`/`sensor` goes to, as created on first ingest.

    `part_bands` maps each asset key (`data`, `mss`, `pan`) to its bands; `renders` are the
    render extension objects of the presets the first item supports (csdr_render);
    `thumbnail_type` is image/jpeg where the delivered thumbnails are kept."""
    platform = platform_of(satellite)
    family = sensor_family(sensor)
    gcmd_instrument, instrument_title = INSTRUMENTS.get(family, (family, family))
    item_assets: dict[str, Any] = {}
    all_bands: list[Band] = []
    for key, bands in part_bands.items():
        all_bands += [b for b in bands if b not in all_bands]
        item_assets[key] = {
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data"],
            "title": f"{key.upper() if key != 'data' else family} orthorectified COG",
            "eo:bands": _band_summary(bands),
        }
    item_assets |= {
        "thumbnail": {"type": thumbnail_type, "roles": ["thumbnail"], "title": "Thumbnail"},
        "overview": {"type": "image/jpeg", "roles": ["overview"], "title": "Browse image"},
        "metadata": {"type": "application/xml", "roles": ["metadata"], "title": "CRESDA XML"},
    }
    cid = collection_id(satellite, sensor)
    links = []
    if settings.data_policy_url:
        links.append(
            {
                "rel": "license",
                "href": settings.data_policy_url,
                "type": "text/html",
                "title": "Data policy",
            }
        )
    # The render extension needs at least one render: a panchromatic-only collection has none.
    extensions = (
        ("item-assets", "render", "eo", "view", "sat")
        if renders
        else (
            "item-assets",
            "eo",
            "view",
            "sat",
        )
    )
    collection: dict[str, Any] = {
        "type": "Collection",
        "stac_version": "1.1.0",
        "stac_extensions": [STAC_EXTENSIONS[e] for e in extensions],
        "id": cid,
        "title": f"{platform.title} {family} ({instrument_title})",
        "description": (
            f"Orthorectified {platform.title} {instrument_title} ({family}) scenes delivered by"
            f" {settings.producer_name} and served by this CSDR node as Cloud-Optimized GeoTIFFs:"
            " RPC-orthorectified into the UTM zone of each scene at its native ground sampling"
            " distance; raster:bands scale/offset give top-of-atmosphere radiance"
            " (W m-2 sr-1 um-1) from the yearly CRESDA calibration coefficients."
        ),
        "license": settings.collection_license,
        "keywords": [
            platform.title,
            platform.gcmd,
            gcmd_instrument,
            family,
            platform.constellation.upper(),
            "EARTH SCIENCE > SPECTRAL/ENGINEERING > VISIBLE WAVELENGTHS",
            "EARTH SCIENCE > SPECTRAL/ENGINEERING > INFRARED WAVELENGTHS",
            "optical",
            "multispectral",
        ],
        "providers": [
            {
                "name": settings.producer_name,
                "roles": ["producer", "licensor"],
                "url": settings.producer_url,
            },
            {"name": settings.host_name, "roles": ["host", "processor"]},
        ],
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [[None, None]]},
        },
        "summaries": {
            "platform": [platform.platform],
            "constellation": [platform.constellation],
            "instruments": [family.lower()],
            "gsd": sorted(set(gsds)),
            "eo:bands": _band_summary(tuple(all_bands)),
        },
        "item_assets": item_assets,
        "links": links,
    }
    if renders:
        collection["renders"] = renders
    return collection
