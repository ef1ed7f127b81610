"""One orthorectified image from a product split into sensor-geometry segments (GF-6 WFV's
`-1.tiff`, `-2.tiff`, `-3.tiff`, each with its own `.rpb`).

All segments go onto one grid: the UTM zone of the product's centre (not of each segment, so
that a segment across a zone boundary still lands on the same grid), the XML's GSD, aligned on
multiples of it (rpc.snapped_grid), covering the union of the segments' RPC footprints. Each
segment is warped with its own RPCs straight into that grid's temporary tiled GTiff without
initialising it, so a segment writes only the pixels it covers and the ones before it keep the
rest; where segments overlap, the later one wins.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import rasterio
from affine import Affine
from rasterio.crs import CRS

from csdr_ingest.cresda.metadata import ProductMetadata
from csdr_ingest.errors import PackageInvalid
from csdr_ingest.packages import scratch_prefix
from csdr_ingest.rpc import ortho_grid, ortho_profile, utm_crs, warp_rpc


def product_centre(
    meta: ProductMetadata, segments: list[rasterio.DatasetReader]
) -> tuple[float, float]:
    """(lon, lat) of the product's centre: the mean of the XML corners, else of the segments'
    RPC ground offsets."""
    if meta.corners is not None:
        ring = meta.corners.ring()[:4]
        return sum(p[0] for p in ring) / 4, sum(p[1] for p in ring) / 4
    return (
        sum(s.rpcs.long_off for s in segments) / len(segments),
        sum(s.rpcs.lat_off for s in segments) / len(segments),
    )


def union_grid(
    segments: list[rasterio.DatasetReader], crs: CRS, gsd: float, dem: Path | None
) -> tuple[Affine, int, int]:
    """The grid of `gsd` pixels aligned on multiples of `gsd` covering every segment."""
    lefts, tops, rights, bottoms = [], [], [], []
    for src in segments:
        transform, width, height = ortho_grid(src, crs, gsd, dem)
        lefts.append(transform.c)
        tops.append(transform.f)
        rights.append(transform.c + width * gsd)
        bottoms.append(transform.f - height * gsd)
    west, north = min(lefts), max(tops)
    cols = math.ceil((max(rights) - west) / gsd - 1e-9)
    rows = math.ceil((north - min(bottoms)) / gsd - 1e-9)
    return Affine(gsd, 0, west, 0, -gsd, north), cols, rows


def check_segments(segments: list[rasterio.DatasetReader]) -> None:
    """Segments of one image must agree on band count and data type."""
    first = segments[0]
    for src in segments[1:]:
        if (src.count, src.dtypes[0]) != (first.count, first.dtypes[0]):
            raise PackageInvalid(
                f"{Path(src.name).name} has {src.count} {src.dtypes[0]} bands but"
                f" {Path(first.name).name} has {first.count} {first.dtypes[0]}:"
                " they cannot be parts of one image"
            )


def mosaic_segments(
    segments: list[rasterio.DatasetReader],
    dst: Path,
    centre: tuple[float, float],
    gsd: float,
    dem: Path | None,
) -> None:
    """Warp every segment with its RPCs into one tiled GTiff at `dst` (see the module doc)."""
    check_segments(segments)
    crs = utm_crs(*centre)
    transform, width, height = union_grid(segments, crs, gsd, dem)
    first = segments[0]
    with rasterio.open(dst, "w", **ortho_profile(first, crs, transform, width, height)) as out:
        for src in segments:
            warp_rpc(src, out, dem, init_dest=False)
        out.descriptions = first.descriptions


@contextmanager
def orthomosaic(
    segments: list[rasterio.DatasetReader],
    meta: ProductMetadata,
    dem: Path | None = None,
    work_dir: Path | None = None,
) -> Iterator[rasterio.DatasetReader]:
    """The segments' orthorectified mosaic at the XML's GSD, in a temporary file under
    `work_dir` removed on exit."""
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=scratch_prefix("ortho"), dir=work_dir) as tmp:
        path = Path(tmp) / f"{meta.source.stem}.mosaic.tif"
        mosaic_segments(segments, path, product_centre(meta, segments), meta.gsd, dem)
        with rasterio.open(path) as mosaic:
            yield mosaic
