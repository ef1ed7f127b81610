"""Orthorectification of sensor-geometry (L1A) TIFFs with their rational polynomial coefficients.

The TIFF is read through a GDAL warped VRT into the UTM zone of its centre at its native GSD, so
the COG writer pulls orthorectified blocks straight from the source in one pass (no intermediate
file). The RPC transformer is given a height: the RPB's HEIGHT_OFF, or a DEM (RPC_DEM) when the
node has one; with neither GDAL projects at height 0, which moved a GF-1 corner by ~250 m
(../shared/fixtures/cresda/README.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.rpc import RPC
from rasterio.vrt import WarpedVRT

from csdr_ingest.errors import RpcMissing

ORTHO_NODATA = 0


def utm_crs(lon: float, lat: float) -> CRS:
    """WGS 84 / UTM zone of a point (EPSG 326xx north, 327xx south)."""
    zone = min(60, int((lon + 180) // 6) + 1)
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def transformer_options(rpcs: RPC, dem: Path | None) -> dict[str, object]:
    """GDAL RPC transformer options: a DEM when given, else the RPB's mean height."""
    if dem is not None:
        return {"RPC_DEM": str(dem), "RPC_DEMINTERPOLATION": "bilinear"}
    return {"RPC_HEIGHT": rpcs.height_off}


@contextmanager
def georeferenced(
    src: rasterio.DatasetReader, sidecar: Path, dem: Path | None = None
) -> Iterator[rasterio.DatasetReader | WarpedVRT]:
    """The dataset itself when it has a CRS; else its RPC orthorectification as a warped VRT."""
    if src.crs is not None:
        yield src
        return
    if not src.rpcs:
        raise RpcMissing(
            f"{Path(src.name).name} is in sensor geometry (no CRS) and its RPC file"
            f" {sidecar.name} is missing from the package: it cannot be placed on the map"
        )
    rpcs = src.rpcs
    crs = utm_crs(rpcs.long_off, rpcs.lat_off)
    options = transformer_options(rpcs, dem)
    # The output grid is GDAL's suggestion (GDALSuggestedWarpOutput2: the source's pixel count
    # kept along the diagonal, i.e. the native GSD to within a few per cent). rasterio's WarpedVRT
    # uses the RPCs only when it lets GDAL choose the grid: given a transform, it builds a
    # geotransform-based transformer and the output comes back empty (rasterio 1.4 _warp.pyx).
    with WarpedVRT(
        src,
        crs=crs,
        nodata=ORTHO_NODATA,
        resampling=Resampling.bilinear,
        warp_mem_limit=256,
        NUM_THREADS="ALL_CPUS",
        **options,
    ) as vrt:
        yield vrt
