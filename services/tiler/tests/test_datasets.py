"""Reading items: what an item reader derives from the item is kept per item object and tile
matrix set (the same as titiler-pgstac's reader derives), and a band the asset lacks is a 400
(InvalidBandName), not rasterio's IndexError; the memoized coordinate work answers as rasterio."""

from __future__ import annotations

import pystac
import pytest
from morecantile import tms as morecantile_tms
from rasterio import warp
from rasterio.crs import CRS
from rio_tiler.errors import InvalidBandName
from titiler.pgstac.reader import PgSTACReader

from csdr_tiler.datasets import (
    DERIVED,
    CrsKey,
    ItemReader,
    _remembered_bounds,
    _remembered_grid,
)
from services.tiler.tests.scenes import Ingested
from services.tiler.tests.test_presets import db  # noqa: F401 - the module's database fixture

MATRIX_SETS = ("WebMercatorQuad", "WorldCRS84Quad")


def test_an_item_readers_derived_values_are_titiler_pgstacs_per_matrix_set(db):  # noqa: F811
    ms: Ingested = db["ms"]
    item = pystac.Item.from_dict(ms.item)
    for _ in range(2):  # made, then kept
        for name in MATRIX_SETS:
            tms = morecantile_tms.get(name)
            with ItemReader(item, tms=tms) as ours, PgSTACReader(item, tms=tms) as theirs:
                for attribute in DERIVED:
                    assert getattr(ours, attribute) == getattr(theirs, attribute), attribute
                assert ours.item is item
    web, crs84 = (ItemReader(item, tms=morecantile_tms.get(n)) for n in MATRIX_SETS)
    assert (web.minzoom, web.maxzoom) != (crs84.minzoom, crs84.maxzoom)
    # Another object of the item (a new version from the cache) derives its own.
    again = pystac.Item.from_dict({**ms.item, "assets": {}})
    with pytest.raises(Exception, match="No valid asset"):
        ItemReader(again)


def test_a_band_the_asset_lacks_is_a_client_error(db):  # noqa: F811
    ms: Ingested = db["ms"]
    with ItemReader(pystac.Item.from_dict(ms.item)) as reader:
        tile = ms.centre_tile(13)
        assert reader.tile(tile.x, tile.y, tile.z, assets=[{"name": "data", "indexes": [4]}])
        for read in (
            lambda: reader.tile(tile.x, tile.y, tile.z, assets=[{"name": "data", "indexes": [5]}]),
            lambda: reader.preview(assets=[{"name": "data", "indexes": [0]}], max_size=32),
            lambda: reader.point(*ms.item["bbox"][:2], assets=[{"name": "data", "indexes": [9]}]),
        ):
            with pytest.raises(InvalidBandName, match="the asset has bands 1 to 4"):
                read()


def test_remembered_transforms_answer_as_rasterio_does():
    utm, mercator = CRS.from_epsg(32650), CRS.from_epsg(3857)
    bounds = (662000.0, 4177712.0, 674288.0, 4190000.0)
    for _ in range(2):  # computed, then remembered
        for src, dst in ((utm, mercator), (CRS.from_epsg(32650), "EPSG:4326")):
            assert _remembered_bounds(src, dst, *bounds, densify_pts=21) == (
                warp.transform_bounds(src, dst, *bounds, densify_pts=21)
            )
            assert _remembered_grid(src, dst, 1536, 1536, *bounds) == (
                warp.calculate_default_transform(src, dst, 1536, 1536, *bounds)
            )
    # Equal CRSs are one key, whichever object; different ones are not.
    assert CrsKey(utm) == CrsKey(CRS.from_epsg(32650)) and hash(CrsKey(utm)) == hash(utm)
    assert CrsKey(utm) != CrsKey(mercator)
    # Unhashable arguments are computed afresh, not refused.
    wkt = {"init": "epsg:3857"}
    assert _remembered_bounds(utm, wkt, *bounds) == warp.transform_bounds(utm, wkt, *bounds)
