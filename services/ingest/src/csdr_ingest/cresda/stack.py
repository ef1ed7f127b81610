"""Map-projected CRESDA images (HJ-1 CCD, CBERS-04 LEVEL2) as one multi-band dataset.

Such a product arrives as one TIFF per band (`-1.tif`..`-4.tif`) or as one multiband TIFF; both
become a VRT listing the bands in order, read by the COG writer without an intermediate copy.
The swath is a tilted quadrilateral inside the projected rectangle, filled with 0 around it:
a band that declares no nodata gets 0, so the footprint is the swath, not the rectangle.
"""

from __future__ import annotations

import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import rasterio
from rasterio.dtypes import _gdal_typename

from csdr_ingest.errors import PackageInvalid
from csdr_ingest.packages import scratch_prefix

FILL_NODATA = 0


def band_sources(files: list[Path]) -> list[tuple[Path, int]]:
    """(file, band index) of every band, in order: each band of each file."""
    sources = []
    for path in files:
        with rasterio.open(path) as src:
            sources += [(path, b) for b in range(1, src.count + 1)]
    return sources


def check_aligned(files: list[Path]) -> None:
    """The band files of one image must share CRS, grid and data type."""
    with rasterio.open(files[0]) as first:
        ref = (first.crs, first.transform, first.width, first.height, first.dtypes[0])
    for path in files[1:]:
        with rasterio.open(path) as src:
            here = (src.crs, src.transform, src.width, src.height, src.dtypes[0])
        if here != ref:
            raise PackageInvalid(
                f"{path.name} is not on the grid of {files[0].name} (CRS, pixel grid, size or"
                " data type differ): the bands cannot be stacked"
            )


def vrt_document(sources: list[tuple[Path, int]]) -> str:
    """A VRT stacking `sources` with the grid of the first, nodata kept or set to 0."""
    with rasterio.open(sources[0][0]) as first:
        root = ET.Element("VRTDataset", rasterXSize=str(first.width), rasterYSize=str(first.height))
        ET.SubElement(root, "SRS").text = first.crs.to_wkt()
        t = first.transform
        ET.SubElement(root, "GeoTransform").text = ", ".join(
            repr(v) for v in (t.c, t.a, t.b, t.f, t.d, t.e)
        )
    for index, (path, band) in enumerate(sources, 1):
        with rasterio.open(path) as src:
            dtype, nodata = src.dtypes[band - 1], src.nodatavals[band - 1]
            description = src.descriptions[band - 1]
        vrt_band = ET.SubElement(
            root, "VRTRasterBand", dataType=_gdal_typename(dtype), band=str(index)
        )
        ET.SubElement(vrt_band, "NoDataValue").text = repr(
            FILL_NODATA if nodata is None else nodata
        )
        if description:
            ET.SubElement(vrt_band, "Description").text = description
        source = ET.SubElement(vrt_band, "SimpleSource")
        ET.SubElement(source, "SourceFilename", relativeToVRT="0").text = str(path.resolve())
        ET.SubElement(source, "SourceBand").text = str(band)
    return ET.tostring(root, encoding="unicode")


@contextmanager
def stacked(files: list[Path], work_dir: Path | None = None) -> Iterator[rasterio.DatasetReader]:
    """The bands of `files`, in order, as one dataset (a temporary VRT removed on exit)."""
    check_aligned(files)
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=scratch_prefix("stack"), dir=work_dir) as tmp:
        path = Path(tmp) / f"{files[0].stem}.stack.vrt"
        path.write_text(vrt_document(band_sources(files)))
        with rasterio.open(path) as stack:
            yield stack
