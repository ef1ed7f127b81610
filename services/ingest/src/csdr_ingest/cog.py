"""Cloud-Optimized GeoTIFF writing with rio-cogeo: tiled, compressed with a predictor, overviews
down to a single tile, nodata and masks kept, validated before anyone can see the file."""

import math
import uuid
from pathlib import Path

import rasterio
from rio_cogeo.cogeo import cog_translate, cog_validate
from rio_cogeo.profiles import cog_profiles

from csdr_ingest.errors import InvalidCog


def overview_levels(width: int, height: int, blocksize: int) -> int:
    """Number of 2x overviews needed for the smallest one to fit in one internal tile."""
    return max(0, math.ceil(math.log2(max(width, height) / blocksize)))


def cog_profile(dtype: str, compression: str, blocksize: int) -> dict[str, object]:
    """Creation options: DEFLATE or ZSTD, horizontal (2) or floating-point (3) predictor."""
    profile = dict(cog_profiles.get(compression.lower()))
    profile.update(
        blockxsize=blocksize, blockysize=blocksize, predictor=3 if dtype.startswith("float") else 2
    )
    return profile


def write_cog(src: rasterio.DatasetReader, dst: Path, compression: str, blocksize: int) -> None:
    """Write `src` as a validated COG at `dst`, atomically: a temporary name, then a rename."""
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        cog_translate(
            src,
            tmp,
            cog_profile(src.dtypes[0], compression, blocksize),
            overview_level=overview_levels(src.width, src.height, blocksize),
            overview_resampling="average",
            config={"GDAL_NUM_THREADS": "ALL_CPUS", "GDAL_TIFF_OVR_BLOCKSIZE": str(blocksize)},
            quiet=True,
        )
        valid, errors, _ = cog_validate(tmp, quiet=True)
        if not valid:
            raise InvalidCog(f"written COG failed validation: {'; '.join(errors)}")
        tmp.rename(dst)
    finally:
        tmp.unlink(missing_ok=True)
