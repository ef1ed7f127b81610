"""Orthorectification of sensor-geometry (L1A) TIFFs with their rational polynomial coefficients.

A TIFF without a CRS is warped once with GDAL's RPC transformer into the UTM zone of its centre,
on a grid of exactly the XML's ImageGSD aligned on multiples of it (so the parts of a split scene
share one grid), into a temporary tiled GTiff with its overviews that the COG writer then copies.
The transformer always gets a height: the RPB's HEIGHT_OFF, or a DEM (RPC_DEM). Why each warp
option is what it is, with the measurements: docs/performance.md.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.rpc import RPC
from rasterio.warp import calculate_default_transform, reproject

from csdr_ingest.cog import add_overviews
from csdr_ingest.errors import RpcMissing
from csdr_ingest.packages import scratch_prefix

ORTHO_NODATA = 0
# Per warp chunk; GDAL's default (64 MB) makes many small chunks on a 12000 x 13719 scene.
WARP_MEMORY_MB = 256


def utm_crs(lon: float, lat: float) -> CRS:
    """WGS 84 / UTM zone of a point (EPSG 326xx north, 327xx south)."""
    zone = min(60, int((lon + 180) // 6) + 1)
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def transformer_options(rpcs: RPC, dem: Path | None) -> dict[str, object]:
    """GDAL RPC transformer options: a DEM when given (the RPB's mean height where it has no
    value), else the RPB's mean height."""
    if dem is not None:
        return {
            "RPC_DEM": str(dem),
            "RPC_DEMINTERPOLATION": "bilinear",
            "RPC_DEM_MISSING_VALUE": rpcs.height_off,
        }
    return {"RPC_HEIGHT": rpcs.height_off}


def snapped_grid(transform: Affine, width: int, height: int, gsd: float) -> tuple[Affine, int, int]:
    """The grid of `gsd` pixels, aligned on multiples of `gsd`, covering a north-up grid."""
    left, top = transform.c, transform.f
    right, bottom = left + width * transform.a, top + height * transform.e
    west, north = math.floor(left / gsd) * gsd, math.ceil(top / gsd) * gsd
    cols = math.ceil((right - west) / gsd - 1e-9)
    rows = math.ceil((north - bottom) / gsd - 1e-9)
    return Affine(gsd, 0, west, 0, -gsd, north), cols, rows


def ortho_grid(
    src: rasterio.DatasetReader, crs: CRS, gsd: float | None, dem: Path | None
) -> tuple[Affine, int, int]:
    """The output grid: GDAL's suggested extent for the RPC footprint, at `gsd` metres (None:
    GDAL's suggested resolution, the source's pixel count kept along the diagonal)."""
    rpcs = src.rpcs
    transform, width, height = calculate_default_transform(
        None,
        crs,
        src.width,
        src.height,
        rpcs=rpcs,
        **transformer_options(rpcs, dem),
    )
    if gsd is None:
        return transform, width, height
    return snapped_grid(transform, width, height, gsd)


def ortho_profile(
    src: rasterio.DatasetReader, crs: CRS, transform: Affine, width: int, height: int
) -> dict[str, object]:
    """Creation profile of the tiled GTiff an orthorectification is warped into."""
    return {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": src.count,
        "dtype": src.dtypes[0],
        "crs": crs,
        "transform": transform,
        "nodata": ORTHO_NODATA,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "BIGTIFF": "IF_SAFER",
    }


def warp_rpc(
    src: rasterio.DatasetReader,
    out: rasterio.io.DatasetWriter,
    dem: Path | None,
    init_dest: bool = True,
) -> None:
    """Warp every band of `src` with its RPCs onto the grid of `out`; with `init_dest` False
    the pixels `src` does not cover keep what `out` holds (segments of one mosaic). `out`'s
    nodata is lifted during the warp and put back after it (docs/performance.md says why)."""
    bands = list(range(1, src.count + 1))
    nodata = out.nodata
    out.nodata = None
    reproject(
        rasterio.band(src, bands),
        rasterio.band(out, bands),
        rpcs=src.rpcs,
        dst_crs=out.crs,
        dst_transform=out.transform,
        init_dest_nodata=init_dest,
        resampling=Resampling.bilinear,
        XSCALE=1,
        YSCALE=1,
        num_threads=os.cpu_count() or 1,
        warp_mem_limit=WARP_MEMORY_MB,
        **transformer_options(src.rpcs, dem),
    )
    out.nodata = nodata


def orthorectify(
    src: rasterio.DatasetReader, dst: Path, gsd: float | None, dem: Path | None
) -> None:
    """Warp `src` with its RPCs into a tiled GTiff at `dst` (UTM zone of its centre), with
    averaged overviews."""
    crs = utm_crs(src.rpcs.long_off, src.rpcs.lat_off)
    transform, width, height = ortho_grid(src, crs, gsd, dem)
    with rasterio.open(dst, "w", **ortho_profile(src, crs, transform, width, height)) as out:
        warp_rpc(src, out, dem)
        out.descriptions = src.descriptions
        add_overviews(out)


@contextmanager
def georeferenced(
    src: rasterio.DatasetReader,
    sidecar: Path,
    dem: Path | None = None,
    gsd: float | None = None,
    work_dir: Path | None = None,
) -> Iterator[rasterio.DatasetReader]:
    """The dataset itself when it has a CRS; else its RPC orthorectification at `gsd` metres,
    in a temporary file under `work_dir` removed on exit."""
    if src.crs is not None:
        yield src
        return
    if not src.rpcs:
        raise RpcMissing(
            f"{Path(src.name).name} is in sensor geometry (no CRS) and its RPC file"
            f" {sidecar.name} is missing from the package: it cannot be placed on the map"
        )
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=scratch_prefix("ortho"), dir=work_dir) as tmp:
        path = Path(tmp) / f"{Path(src.name).stem}.ortho.tif"
        orthorectify(src, path, gsd, dem)
        with rasterio.open(path) as ortho:
            yield ortho
