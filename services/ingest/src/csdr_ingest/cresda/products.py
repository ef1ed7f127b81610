"""Recognising the products in an unpacked CRESDA package, by content rather than by name.

A product XML (see metadata.is_product_metadata; `order.xml` and `*.aux.xml` are skipped)
describes the image beside it with the same stem: `S.xml` + `S.tiff` (+ `S.rpb`). Multi-part
products name their parts with a suffix (`-MSS1`/`-PAN1`, `-MUX`/`-PAN`) and may add a scene-level
`S.xml` with no image of its own. XMLs with the same ProductID form one product, one STAC item.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from csdr_ingest.cresda.metadata import ProductMetadata, is_product_metadata, parse_metadata
from csdr_ingest.errors import PackageInvalid

RASTER_SUFFIXES = (".tiff", ".tif", ".TIFF", ".TIF")
PART_SUFFIX = re.compile(r"-(MSS|PAN|MUX)\d*$", re.IGNORECASE)


@dataclass
class Part:
    """One image of a product: its asset key (`data`, `mss`, `pan`, `mux`), XML and TIFF."""

    key: str
    metadata: ProductMetadata
    raster: Path

    @property
    def rpc_sidecar(self) -> Path:
        """Where the RPC file of a sensor-geometry TIFF must be (GDAL reads it from there)."""
        return self.raster.with_suffix(".rpb")


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
            f"{root.name}: no product metadata XML (ProductMetaData or <root><data>) in the package"
        )
    by_product: dict[str, list[tuple[Path, ProductMetadata]]] = {}
    for xml in xmls:
        meta = parse_metadata(xml)
        by_product.setdefault(meta.product_id, []).append((xml, meta))
    return [_product(entries) for entries in by_product.values()]


def _raster_for(xml: Path) -> Path | None:
    for suffix in RASTER_SUFFIXES:
        candidate = xml.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def _product(entries: list[tuple[Path, ProductMetadata]]) -> Product:
    parts: list[Part] = []
    scene: ProductMetadata | None = None
    for xml, meta in entries:
        raster = _raster_for(xml)
        suffix = PART_SUFFIX.search(xml.stem)
        if raster is None:
            if suffix is None and len(entries) > 1:
                scene = meta  # a scene-level XML beside its parts' XMLs
                continue
            raise PackageInvalid(
                f"{xml.name} describes an image that is not in the package:"
                f" expected {xml.with_suffix('.tiff').name}"
            )
        key = suffix.group(1).lower() if suffix else "data"
        parts.append(Part(key, meta, raster))
    if not parts:
        raise PackageInvalid(f"{entries[0][0].name}: the package holds no image for this product")
    parts.sort(key=lambda p: (p.key == "pan", p.key))  # multispectral first: it is the primary
    primary = scene or parts[0].metadata
    xml_files = [xml for xml, _ in entries]
    stem = (scene.source if scene else parts[0].raster).with_suffix("")
    base = PART_SUFFIX.sub("", stem.name)
    folder = xml_files[0].parent
    browse = next(iter(sorted(folder.glob(f"{base}*.jpg"))), None)
    return Product(primary, parts, xml_files, browse=browse)
