"""Spectral bands and absolute calibration of the CRESDA sensors.

Band edges (micrometres) are from ../shared/fixtures/cresda/README.md (CRESDA sensor sheets);
calibration gains and offsets are CRESDA's yearly published coefficients, as transcribed by the
Gaofen-Batch project (calibration_coefficients.tsv beside this file):
radiance L [W m-2 sr-1 um-1] = gain * DN + offset.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

CALIBRATION_TSV = Path(__file__).with_name("calibration_coefficients.tsv")


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


def bands_for(satellite: str, sensor: str, count: int) -> tuple[Band, ...]:
    """The bands of a sensor part with `count` bands, in file order."""
    if count == 1:
        return PANCHROMATIC
    if satellite.startswith("GF6") and sensor.startswith("WFV"):
        return GF6_WFV[:count]
    if satellite.startswith("HJ1"):
        return HJ1_CCD[:count]
    return MULTISPECTRAL[:count]


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
    if not years:
        return None
    earlier = [y for y in years if y <= year]
    return years[max(earlier)] if earlier else years[min(years)]
