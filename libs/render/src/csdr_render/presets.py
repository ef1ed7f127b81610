"""Render presets by name (`true-color`, `false-color`, `ndvi`, `pan`; for elevation models
`hillshade`, `relief`, `terrain-rgb`), derived from the STAC assets' band common names (or a
single band in metres) and stretched by the statistics ingest stored in `raster:bands`.

A preset is what a QGIS user pastes instead of titiler's `assets=data|bidx=3,2,1&rescale=...`:
its name goes in the URL path, so the URL carries no `|` or `#`.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import Any

# eo:common_name per output channel (STAC eo extension, "Common band names").
TRUE_COLOR = ("red", "green", "blue")
FALSE_COLOR = ("nir", "red", "green")
# NDVI's range is fixed by its formula, not by the scene: -1..1, red to green.
NDVI_RANGE = (-1.0, 1.0)
NDVI_COLORMAP = "rdylgn"
# Elevation (a single raster band whose unit is metres): shaded relief as gdaldem draws it
# (Horn's method, light from 315 deg at 45 deg, read with a 1-pixel buffer for the edges: the
# tiler's `horn-hillshade` algorithm), a terrain colour ramp over the stored minimum..maximum, and
# Mapbox terrain-RGB (height = -10000 + (R * 65536 + G * 256 + B) * 0.1), which MapLibre's
# raster-dem source (`encoding: "mapbox"`) and QGIS decode (titiler's `terrainrgb` algorithm).
ELEVATION_UNITS = ("m", "metre", "meter", "metres", "meters")
HILLSHADE = "horn-hillshade"
RELIEF_COLORMAP = "terrain"
TERRAIN_RGB = "terrainrgb"
# Stretch a band over mean +- 2 standard deviations (clipped to the band's min/max): about 95 %
# of a normal band's pixels, the usual default of GIS viewers' "standard deviation" stretch.
STRETCH_STDDEVS = 2.0

Range = tuple[float, float]


@dataclass(frozen=True)
class Preset:
    """One named rendering of one asset: band indexes or an expression, stretch and colour map."""

    name: str
    title: str
    asset: str
    indexes: tuple[int, ...] = ()
    expression: str | None = None
    rescale: tuple[Range, ...] = ()
    colormap_name: str | None = None
    algorithm: str | None = None
    """A titiler post-processing algorithm by name (hillshade, terrain-RGB), applied last."""
    buffer: int = 0
    """Pixels read around each tile for the algorithm (its neighbours at the tile's edges)."""

    def titiler_params(self) -> list[tuple[str, str]]:
        """The same rendering as raw titiler-pgstac query parameters (for developers)."""
        if self.expression:
            params = [("assets", self.asset), ("expression", self.expression)]
        else:
            bidx = ",".join(map(str, self.indexes))
            params = [("assets", f"{self.asset}|bidx={bidx}")]
        params += [("rescale", f"{lo:g},{hi:g}") for lo, hi in self.rescale]
        if self.colormap_name:
            params.append(("colormap_name", self.colormap_name))
        if self.algorithm:
            params.append(("algorithm", self.algorithm))
        if self.buffer:
            params.append(("buffer", str(self.buffer)))
        return params

    def render(self) -> dict[str, Any]:
        """The same rendering as a STAC render extension object (a collection's `renders`)."""
        obj: dict[str, Any] = {"title": self.title, "assets": [self.asset]}
        if self.expression:
            obj["expression"] = self.expression
        else:
            obj["bidx"] = list(self.indexes)
        if self.rescale:
            obj["rescale"] = [list(r) for r in self.rescale]
        if self.colormap_name:
            obj["colormap_name"] = self.colormap_name
        return obj


@dataclass
class AssetBands:
    """Where each common name lives in one asset (1-based index) and each band's stretch."""

    key: str
    index: dict[str, int] = field(default_factory=dict)
    stretch: dict[int, Range] = field(default_factory=dict)


def band_stretch(statistics: Mapping[str, Any]) -> Range | None:
    """mean +- 2 stddev within [minimum, maximum], or None without usable statistics."""
    try:
        lo, hi = float(statistics["minimum"]), float(statistics["maximum"])
        mean, stddev = float(statistics["mean"]), float(statistics["stddev"])
    except (KeyError, TypeError, ValueError):
        return None
    low = max(lo, mean - STRETCH_STDDEVS * stddev)
    high = min(hi, mean + STRETCH_STDDEVS * stddev)
    return (round(low, 3), round(high, 3)) if high > low else None


def asset_bands(key: str, asset: Mapping[str, Any]) -> AssetBands | None:
    """The common names and stretches of a data asset, or None for other assets."""
    roles = asset.get("roles") or ["data"]
    bands = asset.get("eo:bands") or asset.get("bands") or []
    if "data" not in roles or not bands:
        return None
    found = AssetBands(key)
    for i, band in enumerate(bands, start=1):
        name = band.get("common_name") or band.get("eo:common_name")
        if name and name not in found.index:
            found.index[name] = i
    for i, band in enumerate(asset.get("raster:bands") or [], start=1):
        if stretch := band_stretch(band.get("statistics") or {}):
            found.stretch[i] = stretch
    return found


def _composite(name: str, title: str, bands: AssetBands, names: Sequence[str]) -> Preset:
    indexes = tuple(bands.index[n] for n in names)
    stretches = [bands.stretch.get(i) for i in indexes]
    rescale = tuple(s for s in stretches if s is not None)
    return Preset(
        name,
        title,
        bands.key,
        indexes=indexes,
        rescale=rescale if len(rescale) == len(indexes) else (),
    )


def elevation_range(asset: Mapping[str, Any]) -> Range | None:
    """The stored minimum..maximum of a data asset that is one band of elevations in metres,
    else None."""
    bands = asset.get("raster:bands") or []
    if "data" not in (asset.get("roles") or ["data"]) or len(bands) != 1:
        return None
    if str(bands[0].get("unit", "")).lower() not in ELEVATION_UNITS:
        return None
    stats = bands[0].get("statistics") or {}
    try:
        low, high = float(stats["minimum"]), float(stats["maximum"])
    except (KeyError, TypeError, ValueError):
        return (0.0, 0.0)
    return (round(low, 3), round(high, 3))


def elevation_presets(key: str, heights: Range) -> dict[str, Preset]:
    """hillshade, relief and terrain-rgb of the elevation asset `key`."""
    presets = {
        "hillshade": Preset(
            "hillshade", "Shaded relief", key, indexes=(1,), algorithm=HILLSHADE, buffer=1
        ),
        "terrain-rgb": Preset(
            "terrain-rgb", "Terrain-RGB (Mapbox encoding)", key, indexes=(1,), algorithm=TERRAIN_RGB
        ),
    }
    if heights[1] > heights[0]:
        presets["relief"] = Preset(
            "relief",
            "Colour relief",
            key,
            indexes=(1,),
            rescale=(heights,),
            colormap_name=RELIEF_COLORMAP,
        )
    return presets


def derive_presets(assets: Mapping[str, Mapping[str, Any]]) -> dict[str, Preset]:
    """Every preset the assets support, by name; each uses the first asset holding its bands."""
    for key, asset in assets.items():
        if (heights := elevation_range(asset)) is not None:
            return elevation_presets(key, heights)
    described = [b for key, asset in assets.items() if (b := asset_bands(key, asset))]
    presets: dict[str, Preset] = {}

    def first_with(names: Iterable[str]) -> AssetBands | None:
        return next((b for b in described if all(n in b.index for n in names)), None)

    if bands := first_with(TRUE_COLOR):
        presets["true-color"] = _composite("true-color", "True colour", bands, TRUE_COLOR)
    if bands := first_with(FALSE_COLOR):
        presets["false-color"] = _composite(
            "false-color", "False colour (NIR, red, green)", bands, FALSE_COLOR
        )
    if bands := first_with(("nir", "red")):
        nir, red = bands.index["nir"], bands.index["red"]
        presets["ndvi"] = Preset(
            "ndvi",
            "NDVI",
            bands.key,
            expression=f"(b{nir}-b{red})/(b{nir}+b{red})",
            rescale=(NDVI_RANGE,),
            colormap_name=NDVI_COLORMAP,
        )
    if bands := first_with(("pan",)):
        presets["pan"] = _composite("pan", "Panchromatic", bands, ("pan",))
    return presets


def merge_stretches(presets: Sequence[Mapping[str, Preset]]) -> dict[str, Preset]:
    """One set of presets for many items (a collection): the first item's bands, each band's
    stretch the median of the items' stretches, so one odd scene does not set the range."""
    if not presets:
        return {}
    merged: dict[str, Preset] = {}
    for name, first in presets[0].items():
        same = [p[name] for p in presets if name in p and p[name].asset == first.asset]
        same = [p for p in same if p.indexes == first.indexes and len(p.rescale) > 0]
        if first.expression or not same:
            merged[name] = first
            continue
        rescale = tuple(
            (median(p.rescale[i][0] for p in same), median(p.rescale[i][1] for p in same))
            for i in range(len(first.indexes))
        )
        merged[name] = Preset(
            first.name,
            first.title,
            first.asset,
            indexes=first.indexes,
            rescale=rescale,
            colormap_name=first.colormap_name,
            algorithm=first.algorithm,
            buffer=first.buffer,
        )
    return merged
