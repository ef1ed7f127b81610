"""A million catalog items, fast: the synthetic sensors of `tests/e2e/catalog_scenes.py` written
straight as pypgstac's dehydrated rows (the tab-separated `id, geometry, collection, datetime,
end_datetime, content` that `Loader.load_items(..., dehydrated=True)` reads), drawn in bulk with
numpy. Building items as dicts and letting the Loader dehydrate them costs ~200 us per item here
(1M items: over three minutes per database); this costs a few microseconds.

The rows are checked against the Loader's own `format_item` (`check_rows`), so a load of them
stores exactly what loading the hydrated items would.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from tests.e2e.catalog_scenes import EAST, NORTH, SENSORS, SOUTH, START, WEST, YEARS, Sensor
from tests.support.items import COG, stac_item

# pypgstac's marker for "present in the collection's item_assets, absent from the item".
DO_NOT_MERGE = "𒍟※"


_EWKB_HEAD = struct.pack("<BIIII", 1, 0x20000003, 4326, 1, 5).hex()


def _bucket(
    sensor: Sensor, year: int, size: int, first: int, rng: np.random.Generator
) -> Iterator[tuple[str, str, str, str, str, str]]:
    """One collection-year of scenes in acquisition order, as dehydrated rows."""
    start = START.replace(year=START.year + year)
    span_s = int((start.replace(year=start.year + 1) - start).total_seconds())
    offsets = np.sort(rng.integers(0, span_s, size)).astype("timedelta64[s]")
    stamps = np.datetime_as_string(np.datetime64(start.replace(tzinfo=None), "s") + offsets)
    west = np.round(rng.uniform(WEST, EAST - sensor.swath_deg, size), 4)
    south = np.round(rng.uniform(SOUTH, NORTH - sensor.swath_deg, size), 4)
    east, north = np.round(west + sensor.swath_deg, 4), np.round(south + sensor.swath_deg, 4)
    # The footprint's closed ring, x/y pairs as little-endian doubles: the body of its EWKB.
    rings = np.stack([west, south, east, south, east, north, west, north, west, south], axis=1)
    rings = rings.astype("<f8")
    cloud = np.round(rng.uniform(0, 100, size), 1)
    nadir = np.round(rng.uniform(0, 30, size), 2)
    sun = np.round(rng.uniform(10, 75, size), 2)
    level = "L2" if sensor.collection.endswith("l2") else "L1A"
    prefix = f"{sensor.platform.upper()}_{sensor.instrument.upper()}_"
    hrefs = f"/srv/csdr/assets/{sensor.collection}/"
    fixed = (
        f'"constellation":"{sensor.constellation}","platform":"{sensor.platform}",'
        f'"instruments":["{sensor.instrument}"],"gsd":{sensor.gsd!r},'
    )
    west, south, east, north = west.tolist(), south.tolist(), east.tolist(), north.tolist()
    cloud, nadir, sun = cloud.tolist(), nadir.tolist(), sun.tolist()
    for k in range(size):
        n = first + k
        stamp = f"{stamps[k]}Z"
        item_id = f"{prefix}{stamp[:4]}{stamp[5:7]}{stamp[8:10]}_{n:07d}"
        content = (
            f'{{"bbox":[{west[k]!r},{south[k]!r},{east[k]!r},{north[k]!r}],'
            f'"properties":{{"datetime":"{stamp}",{fixed}"eo:cloud_cover":{cloud[k]!r},'
            f'"view:off_nadir":{nadir[k]!r},"view:sun_elevation":{sun[k]!r},'
            f'"sat:absolute_orbit":{1000 + n // 40},"processing:level":"{level}"}},'
            f'"assets":{{"data":{{"href":"{hrefs}{item_id}.tif","title":"{DO_NOT_MERGE}"}},'
            f'"thumbnail":{{"href":"{hrefs}{item_id}.png","title":"{DO_NOT_MERGE}"}}}},'
            f'"links":[]}}'
        )
        geometry = _EWKB_HEAD + rings[k].tobytes().hex()
        yield item_id, geometry, sensor.collection, stamp, stamp, content


def rows(count: int, seed: int = 4) -> Iterator[tuple[str, str, str, str, str, str]]:
    """`count` dehydrated rows spread over the sensors and five years, collection by collection,
    year by year, each year in acquisition order (how an archive is bulk-loaded, and what lets
    the Loader fill one partition per chunk)."""
    rng = np.random.default_rng(seed)
    buckets = [(s, y) for s in SENSORS for y in range(YEARS)]
    first = 0
    for b, (sensor, year) in enumerate(buckets):
        size = count // len(buckets) + (b < count % len(buckets))
        yield from _bucket(sensor, year, size, first, rng)
        first += size


def write_rows(path: Path, count: int, seed: int = 4) -> Path:
    """Write `rows(count, seed)` as the Loader's dehydrated file format."""
    with path.open("w") as f:
        f.writelines("\t".join(row) + "\n" for row in rows(count, seed))
    return path


def hydrated(row: tuple[str, ...]) -> dict[str, Any]:
    """The full STAC item a dehydrated row stands for (the inverse, for checking)."""
    item_id, _, collection, _, _, content = row
    item: dict[str, Any] = orjson.loads(content)
    for asset, href in ((a, v["href"]) for a, v in item["assets"].items()):
        base = {"data": {"type": COG, "roles": ["data"]}}.get(
            asset, {"type": "image/png", "roles": ["thumbnail"]}
        )
        item["assets"][asset] = {"href": href, **base}
    return {**stac_item(item_id, collection, item["bbox"], {}), **item}


def utc(stamp: str) -> datetime:
    """A row's datetime column as an aware datetime."""
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
