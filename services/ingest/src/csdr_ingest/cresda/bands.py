"""Spectral bands and absolute calibration of the CRESDA sensors.

Band edges (micrometres) are from tests/fixtures/cresda/README.md (CRESDA sensor sheets) and,
for CBERS-04, from the CBERS-3/4 instrument tables (CRESDA/INPE), whose bands are numbered across
the four cameras (PAN 1-4, MUX 5-8, IRS 9-12, WFI 13-16) and named by that number in the XML;
calibration gains and offsets are CRESDA's yearly published coefficients, as transcribed by the
Gaofen-Batch project (calibration_coefficients.tsv beside this file):
radiance L [W m-2 sr-1 um-1] = gain * DN + offset.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from csdr_ingest.cresda.metadata import CAMERA_VIEWS, ProductMetadata, sensor_family

CALIBRATION_TSV = Path(__file__).with_name("calibration_coefficients.tsv")
# A part named by camera view and camera (`BWDMUX`, `FWDPAN`): stereo cameras of GF-7 and ZY-3.
VIEW_PREFIX = re.compile(rf"^({CAMERA_VIEWS})(\w+)$")


@dataclass(frozen=True)
class Band:
    """One spectral band: STAC eo name, common name, edges in micrometres."""

    name: str
    common_name: str
    low_um: float
    high_um: float

    @property
    def center_wavelength(self) -> float:
        """Centre wavelength, micrometres."""
        return round((self.low_um + self.high_um) / 2, 4)

    @property
    def full_width_half_max(self) -> float:
        """Band width, micrometres."""
        return round(self.high_um - self.low_um, 4)


MULTISPECTRAL = (
    Band("B1", "blue", 0.45, 0.52),
    Band("B2", "green", 0.52, 0.59),
    Band("B3", "red", 0.63, 0.69),
    Band("B4", "nir", 0.77, 0.89),
)
PANCHROMATIC = (Band("PAN", "pan", 0.45, 0.90),)
# GF-6 WFV, in file order: B1-B4 as above, then two red-edge, coastal and yellow.
GF6_WFV = (
    *MULTISPECTRAL,
    Band("B5", "rededge", 0.69, 0.73),
    Band("B6", "rededge", 0.73, 0.77),
    Band("B7", "coastal", 0.40, 0.45),
    Band("B8", "yellow", 0.59, 0.63),
)
HJ1_CCD = (
    Band("B1", "blue", 0.43, 0.52),
    Band("B2", "green", 0.52, 0.60),
    Band("B3", "red", 0.63, 0.69),
    Band("B4", "nir", 0.76, 0.90),
)
# CBERS-04 by band number: PANMUX (PAN 5 m, B2-B4 10 m), MUX 20 m, IRS 40/80 m, WFI 64 m.
CBERS4 = {
    1: Band("B1", "pan", 0.51, 0.85),
    2: Band("B2", "green", 0.52, 0.59),
    3: Band("B3", "red", 0.63, 0.69),
    4: Band("B4", "nir", 0.77, 0.89),
    5: Band("B5", "blue", 0.45, 0.52),
    6: Band("B6", "green", 0.52, 0.59),
    7: Band("B7", "red", 0.63, 0.69),
    8: Band("B8", "nir", 0.77, 0.89),
    9: Band("B9", "pan", 0.50, 0.90),
    10: Band("B10", "swir16", 1.55, 1.75),
    11: Band("B11", "swir22", 2.08, 2.35),
    12: Band("B12", "lwir", 10.4, 12.5),
    13: Band("B13", "blue", 0.45, 0.52),
    14: Band("B14", "green", 0.52, 0.59),
    15: Band("B15", "red", 0.63, 0.69),
    16: Band("B16", "nir", 0.77, 0.89),
}
# ZY-1 02C P/MS camera: PAN B1 0.51-0.85 (5 m), MS B2-B4 (10 m); its HR camera's PAN 0.50-0.80.
ZY02C_MS = (
    Band("B2", "green", 0.52, 0.59),
    Band("B3", "red", 0.63, 0.69),
    Band("B4", "nir", 0.77, 0.89),
)
# ZY-1 02D (ZY1E) VNIC camera: PAN B1 0.451-0.902 (2.5 m), 8 MS bands B2-B9 (10 m) in file order.
ZY1E_VNIC = (
    Band("B2", "blue", 0.452, 0.521),
    Band("B3", "green", 0.522, 0.607),
    Band("B4", "red", 0.635, 0.694),
    Band("B5", "nir", 0.776, 0.895),
    Band("B6", "coastal", 0.416, 0.452),
    Band("B7", "yellow", 0.591, 0.633),
    Band("B8", "rededge", 0.708, 0.752),
    Band("B9", "nir09", 0.871, 1.047),
)
# Multispectral bands in file order, by SatelliteID (and sensor), where they differ from GF-1/2's.
MULTISPECTRAL_OF: dict[str | tuple[str, str], tuple[Band, ...]] = {
    ("GF6", "WFV"): GF6_WFV,
    "HJ1A": HJ1_CCD,
    "HJ1B": HJ1_CCD,
    "ZY02C": ZY02C_MS,
    "ZY1E": ZY1E_VNIC,
}
PANCHROMATIC_OF: dict[str | tuple[str, str], tuple[Band, ...]] = {
    ("ZY02C", "HRC"): (Band("PAN", "pan", 0.50, 0.80),),
    "ZY02C": (Band("B1", "pan", 0.51, 0.85),),
    "ZY1E": (Band("B1", "pan", 0.451, 0.902),),
}
# Satellites whose XML names bands by a number that says which band it is.
NUMBERED = {"CBERS4": CBERS4, "CBERS04": CBERS4, "CB04": CBERS4}
# The satellite-wide number of a camera's first band, where records also number the camera's
# bands from 1 (the real CBERS-04 MUX record lists bands `1,2,3,4` for MUX's B5-B8).
CBERS4_IDS = {"CBERS04": "CBERS4", "CB04": "CBERS4"}
CAMERA_FIRST_BAND = {("CBERS4", "MUX"): 5, ("CBERS4", "IRS"): 9, ("CBERS4", "WFI"): 13}


def bands_for(meta: ProductMetadata, count: int | None = None) -> tuple[Band, ...]:
    """The bands, in file order, of the image `meta` describes (`count` bands when known from
    the image itself; else as many as the XML lists, or 4)."""
    numbers = meta.bands
    count = count or len(numbers) or 4
    satellite, family = meta.satellite.upper(), sensor_family(meta.sensor)
    table = NUMBERED.get(satellite)
    first = CAMERA_FIRST_BAND.get((CBERS4_IDS.get(satellite, satellite), family))
    if table and first and numbers and max(numbers) <= 4:
        numbers = tuple(first + n - 1 for n in numbers)  # the camera's own numbering
    if table and len(numbers) == count and all(n in table for n in numbers):
        return tuple(table[n] for n in numbers)
    if count == 1:
        found = PANCHROMATIC_OF.get((satellite, family)) or PANCHROMATIC_OF.get(satellite)
        return found or PANCHROMATIC
    found = MULTISPECTRAL_OF.get((satellite, family)) or MULTISPECTRAL_OF.get(satellite)
    return (found or MULTISPECTRAL)[:count]


@dataclass(frozen=True)
class Calibration:
    """Gains and offsets (one per band) of one sensor part in one year."""

    year: int
    gains: tuple[float, ...]
    offsets: tuple[float, ...]


@cache
def _table() -> dict[tuple[str, str, str], dict[int, Calibration]]:
    table: dict[tuple[str, str, str], dict[int, Calibration]] = {}
    with CALIBRATION_TSV.open() as f:
        rows = csv.DictReader((line for line in f if not line.startswith("#")), delimiter="\t")
        for row in rows:
            sat, sensor, sub, year = row["satellite"], row["sensor"], row["subsensor"], row["year"]
            # The file warns its GF-1 WFV 2013 rows look like reciprocal-form coefficients.
            if sat == "GF1" and sensor.startswith("WFV") and year == "2013":
                continue
            gains = tuple(float(v) for v in row["gain"].split(","))
            offsets = tuple(float(v) for v in row["offset"].split(","))
            if len(offsets) == 1 and len(gains) > 1:
                offsets = offsets * len(gains)
            table.setdefault((sat, sensor, sub), {})[int(year)] = Calibration(
                int(year), gains, offsets
            )
    return table


def calibration_for(satellite: str, sensor: str, part: str, year: int) -> Calibration | None:
    """The coefficients of the acquisition year; else of the latest earlier year, else of the
    earliest later one (CRESDA publishes them late); None for a sensor with no table."""
    subsensor = "" if part in ("", "data") else part.upper()
    years = _table().get((satellite, sensor, subsensor))
    view = VIEW_PREFIX.match(subsensor)
    if not years and view:  # GF-7's `BWDMUX` part: the table lists it as sensor BWD, MUX
        years = _table().get((satellite, view.group(1), view.group(2)))
    if not years:
        return None
    earlier = [y for y in years if y <= year]
    return years[max(earlier)] if earlier else years[min(years)]
