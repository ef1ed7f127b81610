"""Recognising the products in an unpacked CRESDA/LASAC package, by content rather than by name.

A product XML (see metadata.is_product_metadata; `order.xml` and `*.aux.xml` are skipped)
describes the image beside it with the same stem: `S.xml` + `S.tiff` (+ `S.rpb` or LASAC's
`S_rpc.txt`). Multi-part products name their parts with a suffix (`-MSS1`/`-PAN1`, `-MUX`/`-PAN`,
GF-7's `-BWDPAN`/`-BWDMUX`) and may add a scene-level `S.xml` with no image of its own. XMLs with
the same ProductID form one product, one STAC item.

An XML with no same-stem image but numbered ones (`S-1.tiff`, `S-2.tiff`, ...) is one of two
layouts, told apart by what the files hold: single-band map-projected files are one file per
band (HJ-1 CCD, CBERS-04: stacked in band order); anything else is an image split into
segments that each carry their own RPCs (GF-6 WFV: orthorectified each, then mosaicked).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import rasterio
from rasterio.errors import RasterioError

from csdr_ingest.cresda.metadata import (
    CAMERA_VIEWS,
    ProductMetadata,
    is_product_metadata,
    parse_metadata,
)
from csdr_ingest.cresda.rpctext import rpc_txt_path
from csdr_ingest.errors import PackageInvalid, SourceUnreadable

RASTER_SUFFIXES = (".tiff", ".tif")
JPEG_SUFFIXES = (".jpg", ".jpeg")
PART_SUFFIX = re.compile(rf"-((?:{CAMERA_VIEWS})?(?:MSS|PAN|MUX))\d*$", re.IGNORECASE)
# A delivered thumbnail: LASAC's `_ico.jpg`, CRESDA's `_thumb.jpg`.
THUMBNAIL_STEM = re.compile(r"[_-](ico|thumb)$", re.IGNORECASE)

SINGLE = "single"  # one image file
SEGMENTS = "segments"  # numbered sensor-geometry segments: ortho each, then mosaic
BANDS = "bands"  # numbered single-band map-projected files: stack in band order


@dataclass
class Part:
    """One image of a product: its asset key (`data`, `mss`, `pan`, `mux`, ...), XML and the
    file(s) of its image, laid out as `layout` says."""

    key: str
    metadata: ProductMetadata
    rasters: list[Path]
    layout: str = SINGLE

    @property
    def raster(self) -> Path:
        """The (first) image file."""
        return self.rasters[0]

    def rpc_sidecar(self, raster: Path) -> Path:
        """The RPC file GDAL reads for `raster`: `.rpb`, or `_rpc.txt` (LASAC's form, and what
        a LASAC product needs when neither is there)."""
        rpb, txt = raster.with_suffix(".rpb"), rpc_txt_path(raster)
        lasac = self.metadata.schema == "sensor_corrected_metadata"
        if rpb.is_file() or not txt.is_file() and not lasac:
            return rpb
        return txt


@dataclass
class Product:
    """One product (one STAC item): the scene's metadata and its image parts."""

    metadata: ProductMetadata
    parts: list[Part]
    xml_files: list[Path] = field(default_factory=list)
    browse: Path | None = None
    thumbnail: Path | None = None


def find_products(root: Path) -> list[Product]:
    """Every product in an unpacked package, or PackageInvalid saying what is missing."""
    xmls = sorted(p for p in root.rglob("*") if p.is_file() and is_product_metadata(p))
    if not xmls:
        raise PackageInvalid(
            f"{root.name}: no product metadata XML (ProductMetaData, <root><data> or"
            " sensor_corrected_metadata) in the package"
        )
    by_product: dict[str, list[tuple[Path, ProductMetadata]]] = {}
    for xml in xmls:
        meta = parse_metadata(xml)
        by_product.setdefault(meta.product_id, []).append((xml, meta))
    return [_product(entries) for entries in by_product.values()]


def _is_raster(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in RASTER_SUFFIXES


def _raster_for(xml: Path) -> Path | None:
    return next((p for p in sorted(xml.parent.glob(f"{xml.stem}.*")) if _is_raster(p)), None)


def _numbered(xml: Path) -> dict[int, Path]:
    """`S-1.tiff`, `S-2.tiff`, ... beside `S.xml`, by number."""
    pattern = re.compile(rf"{re.escape(xml.stem)}-(\d{{1,2}})")
    found: dict[int, Path] = {}
    for path in sorted(xml.parent.glob(f"{xml.stem}-*")):
        match = pattern.fullmatch(path.stem)
        if match and _is_raster(path):
            found[int(match.group(1))] = path
    return found


def _single_band_map(path: Path) -> bool:
    """True for a one-band raster that already has a CRS (one file of a per-band product)."""
    try:
        with rasterio.open(path) as src:
            return src.count == 1 and src.crs is not None
    except RasterioError as exc:
        raise SourceUnreadable(f"{path.name}: not a readable raster ({exc})") from exc


def _missing(xml: Path, numbers: list[int], found: dict[int, Path], what: str) -> None:
    absent = [n for n in numbers if n not in found]
    if absent:
        suffix = next(iter(found.values())).suffix
        names = ", ".join(f"{xml.stem}-{n}{suffix}" for n in absent)
        raise PackageInvalid(
            f"{xml.name} describes {what}, but {names} is missing from the package"
        )


def _numbered_part(
    xml: Path, meta: ProductMetadata, found: dict[int, Path]
) -> tuple[list[Path], str]:
    """The files and layout of an image delivered as numbered files."""
    if all(_single_band_map(p) for p in found.values()):
        numbers = list(meta.bands) if len(meta.bands) > 1 else sorted(found)
        _missing(xml, numbers, found, f"bands {','.join(map(str, numbers))} in one file each")
        return [found[n] for n in numbers], BANDS
    numbers = list(range(1, max(found) + 1))
    _missing(xml, numbers, found, f"an image split into {len(numbers)} or more segments")
    return [found[n] for n in numbers], SEGMENTS


def _product(entries: list[tuple[Path, ProductMetadata]]) -> Product:
    parts: list[Part] = []
    scene: ProductMetadata | None = None
    for xml, meta in entries:
        raster = _raster_for(xml)
        suffix = PART_SUFFIX.search(xml.stem)
        key = suffix.group(1).lower() if suffix else "data"
        if raster is not None:
            parts.append(Part(key, meta, [raster]))
            continue
        numbered = _numbered(xml)
        if numbered:
            rasters, layout = _numbered_part(xml, meta, numbered)
            parts.append(Part(key, meta, rasters, layout))
            continue
        if suffix is None and len(entries) > 1:
            scene = meta  # a scene-level XML beside its parts' XMLs
            continue
        raise PackageInvalid(
            f"{xml.name} describes an image that is not in the package:"
            f" expected {xml.with_suffix('.tiff').name}"
        )
    if not parts:
        raise PackageInvalid(f"{entries[0][0].name}: the package holds no image for this product")
    parts.sort(key=lambda p: ("pan" in p.key, p.key))  # multispectral first: it is the primary
    primary = scene or parts[0].metadata
    xml_files = [xml for xml, _ in entries]
    stem = (scene.source if scene else parts[0].metadata.source).with_suffix("")
    browse, thumbnail = _jpegs(xml_files[0].parent, PART_SUFFIX.sub("", stem.name))
    return Product(primary, parts, xml_files, browse=browse, thumbnail=thumbnail)


def _jpegs(folder: Path, base: str) -> tuple[Path | None, Path | None]:
    """The delivered browse image and thumbnail of a product whose files start with `base`:
    `_ico`/`_thumb` JPEGs are thumbnails; of the others LASAC's `_pre` is preferred, then the
    one named like the product, then the first by name."""
    jpegs = sorted(
        p for p in folder.glob(f"{base}*") if p.is_file() and p.suffix.lower() in JPEG_SUFFIXES
    )
    thumbnails = [p for p in jpegs if THUMBNAIL_STEM.search(p.stem)]
    browses = sorted(
        (p for p in jpegs if p not in thumbnails),
        key=lambda p: (not p.stem.lower().endswith("_pre"), p.stem != base, p.name),
    )
    return next(iter(browses), None), next(iter(thumbnails), None)
