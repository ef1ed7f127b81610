"""RPC sidecars in GDAL's RPC text format (`<image>_rpc.txt`), as LASAC ships for ZY-3 and GF-7.

One `KEY: value [unit]` per line: `LINE_OFF`, `SAMP_OFF`, `LAT_OFF`, `LONG_OFF`, `HEIGHT_OFF`,
the five `*_SCALE`s, and `LINE_NUM_COEFF_1..20`, `LINE_DEN_COEFF_1..20`, `SAMP_NUM_COEFF_1..20`,
`SAMP_DEN_COEFF_1..20` (GDAL's GDALLoadRPCFile reads the same; it also picks the file up beside
`<image>.tif` by itself). Reading it here lets a damaged sidecar be refused by name instead of
being ignored.
"""

from __future__ import annotations

import re
from pathlib import Path

from rasterio.rpc import RPC

from csdr_ingest.errors import PackageInvalid

OFFSETS_AND_SCALES = (
    "LINE_OFF",
    "SAMP_OFF",
    "LAT_OFF",
    "LONG_OFF",
    "HEIGHT_OFF",
    "LINE_SCALE",
    "SAMP_SCALE",
    "LAT_SCALE",
    "LONG_SCALE",
    "HEIGHT_SCALE",
)
COEFFICIENTS = ("LINE_NUM_COEFF", "LINE_DEN_COEFF", "SAMP_NUM_COEFF", "SAMP_DEN_COEFF")
LINE = re.compile(r"^\s*([A-Z_]+(?:_\d+)?)\s*:\s*([-+0-9.EeDd]+)")


def rpc_txt_path(raster: Path) -> Path:
    """Where GDAL looks for the RPC text file of `raster` (`X.tif` -> `X_rpc.txt`)."""
    return raster.with_name(f"{raster.stem}_rpc.txt")


def parse_rpc_txt(text: str) -> dict[str, float]:
    """The numbers of an RPC text file by key (`LINE_NUM_COEFF_1`, ...); units are ignored."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = LINE.match(line)
        if match:
            values[match.group(1)] = float(match.group(2).replace("D", "E").replace("d", "e"))
    return values


def read_rpc_txt(path: Path) -> RPC:
    """The RPC model of an `_rpc.txt` file, or PackageInvalid naming the file and the gap."""
    try:
        values = parse_rpc_txt(path.read_text(encoding="utf-8", errors="replace"))
    except OSError as exc:
        raise PackageInvalid(f"{path.name}: the RPC file cannot be read ({exc})") from exc
    missing = [k for k in OFFSETS_AND_SCALES if k not in values]
    missing += [f"{c}_{i}" for c in COEFFICIENTS for i in range(1, 21) if f"{c}_{i}" not in values]
    if missing:
        shown = ", ".join(missing[:4]) + (" ..." if len(missing) > 4 else "")
        raise PackageInvalid(f"{path.name}: not a complete RPC file (missing {shown})")
    coeffs = {c.lower(): [values[f"{c}_{i}"] for i in range(1, 21)] for c in COEFFICIENTS}
    return RPC(
        height_off=values["HEIGHT_OFF"],
        height_scale=values["HEIGHT_SCALE"],
        lat_off=values["LAT_OFF"],
        lat_scale=values["LAT_SCALE"],
        long_off=values["LONG_OFF"],
        long_scale=values["LONG_SCALE"],
        line_off=values["LINE_OFF"],
        line_scale=values["LINE_SCALE"],
        samp_off=values["SAMP_OFF"],
        samp_scale=values["SAMP_SCALE"],
        **coeffs,
    )


def format_rpc_txt(rpc: RPC) -> str:
    """An RPC model in the RPC text format (the layout GDAL writes)."""
    lines = [f"{key}: {getattr(rpc, key.lower()):+.12f}" for key in OFFSETS_AND_SCALES]
    for coeff in COEFFICIENTS:
        for i, value in enumerate(getattr(rpc, coeff.lower()), 1):
            lines.append(f"{coeff}_{i}: {value:+.15E}")
    return "\n".join(lines) + "\n"
