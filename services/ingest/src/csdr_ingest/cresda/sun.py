"""The sun at a scene: where it stood at the UTC time derived from the metadata, computed with
pysolar (Reda & Andreas' solar position algorithm), against the sun angles the metadata states.

A time read in the wrong zone moves the sun by tens of degrees (8 hours: below the horizon), while
the producers' own sun models differ from pysolar's by a few: so an elevation more than
ELEVATION_TOLERANCE_DEG away from the stated one means the time is wrong, and the ingest refuses
the scene unless the operator accepts the disagreement for that job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pysolar.solar import get_position

from csdr_ingest.cresda.metadata import ProductMetadata
from csdr_ingest.errors import TimeContradictsSun

ELEVATION_TOLERANCE_DEG = 10.0
# The job option (POST /jobs, `csdr-ingest --accept-sun-disagreement`) that publishes anyway.
ACCEPT_OPTION = "accept_sun_disagreement"


@dataclass(frozen=True)
class SunCheck:
    """The sun the metadata states next to the one computed for its time and place."""

    source: str
    when: datetime
    time_zone: str
    lon: float
    lat: float
    stated_elevation: float
    stated_azimuth: float | None
    computed_elevation: float
    computed_azimuth: float

    @property
    def elevation_difference(self) -> float:
        """|stated - computed| elevation, degrees."""
        return abs(self.stated_elevation - self.computed_elevation)

    @property
    def azimuth_difference(self) -> float | None:
        """The angle between stated and computed azimuths (0-180 degrees), None if unstated."""
        if self.stated_azimuth is None:
            return None
        delta = (self.stated_azimuth - self.computed_azimuth) % 360
        return min(delta, 360 - delta)

    @property
    def agrees(self) -> bool:
        """True when the elevations are within ELEVATION_TOLERANCE_DEG."""
        return self.elevation_difference <= ELEVATION_TOLERANCE_DEG

    def reason(self) -> str:
        """Why the time is refused, naming both elevations and the time zone assumed."""
        return (
            f"{self.source}: its times were read as {self.time_zone}, which puts the scene at"
            f" {self.when:%Y-%m-%dT%H:%M:%SZ}; the sun was then at {self.computed_elevation:.1f}"
            f" deg elevation over the scene centre ({self.lon:.3f}, {self.lat:.3f}), but"
            f" the metadata states a sun elevation of {self.stated_elevation:.1f} deg"
            f" ({self.elevation_difference:.1f} deg apart, more than"
            f" {ELEVATION_TOLERANCE_DEG:g}): the time is probably in another zone. Nothing was"
            f" published; the job option {ACCEPT_OPTION} publishes it anyway, marked as such."
        )


def sun_position(lon: float, lat: float, when: datetime) -> tuple[float, float]:
    """(elevation, azimuth) of the sun in degrees at a place and an aware time: elevation above
    the horizon with standard refraction, azimuth clockwise from north."""
    azimuth, elevation = get_position(lat, lon, when)
    return float(elevation), float(azimuth) % 360


def scene_centre(meta: ProductMetadata) -> tuple[float, float] | None:
    """(lon, lat): the mean of the metadata's four corners (across the antimeridian too)."""
    if meta.corners is None:
        return None
    points = meta.corners.ring()[:4]
    lons = [lon for lon, _ in points]
    if max(lons) - min(lons) > 180:
        lons = [lon % 360 for lon in lons]
    lon = sum(lons) / 4
    return (lon - 360 if lon > 180 else lon), sum(lat for _, lat in points) / 4


def check_sun(meta: ProductMetadata) -> SunCheck | None:
    """The stated sun against the computed one at the scene centre and centre time; None when
    the metadata states no sun elevation or no corners."""
    centre = scene_centre(meta)
    if centre is None or meta.sun_elevation is None:
        return None
    elevation, azimuth = sun_position(*centre, meta.center)
    return SunCheck(
        source=meta.source.name,
        when=meta.center,
        time_zone=meta.time_zone,
        lon=centre[0],
        lat=centre[1],
        stated_elevation=meta.sun_elevation,
        stated_azimuth=meta.sun_azimuth,
        computed_elevation=elevation,
        computed_azimuth=azimuth,
    )


def require_agreement(metas: list[ProductMetadata], accept: bool) -> None:
    """Raise TimeContradictsSun for the first metadata whose sun contradicts its time, unless
    the operator accepted the disagreement."""
    for meta in metas:
        check = check_sun(meta)
        if check is not None and not check.agrees and not accept:
            raise TimeContradictsSun(check.reason())
