"""What QGIS builds an XYZ layer on, for tests: GDAL's WMS driver with a TMS service description;
and the pixels a QGIS user should see, from a rasterio read of the ingested COG."""

from pathlib import Path

import morecantile
import numpy as np

from tests.support.pixels import mercator_pixels

HALF_WORLD = 20037508.342789244  # WebMercatorQuad's half width, metres
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
# False colour: NIR, red, green of the 4-band (blue, green, red, nir) scene.
FALSE_COLOR = [4, 3, 2]


def centre_tile(item: dict, z: int) -> morecantile.Tile:
    """The tile at z holding the footprint's centre (a 2 x 2 block from it is in the scene)."""
    west, south, east, north = item["bbox"]
    return WEB_MERCATOR.tile((west + east) / 2, (south + north) / 2, z)


def xyz_layer(path: Path, template: str, zoom: int, bands: int = 4) -> Path:
    """Write a GDAL_WMS description of an XYZ template (`${z}/${x}/${y}`) up to `zoom`."""
    path.write_text(
        f"""<GDAL_WMS>
  <Service name="TMS"><ServerUrl>{template}</ServerUrl></Service>
  <DataWindow>
    <UpperLeftX>-{HALF_WORLD}</UpperLeftX><UpperLeftY>{HALF_WORLD}</UpperLeftY>
    <LowerRightX>{HALF_WORLD}</LowerRightX><LowerRightY>-{HALF_WORLD}</LowerRightY>
    <TileLevel>{zoom}</TileLevel><TileCountX>1</TileCountX><TileCountY>1</TileCountY>
    <YOrigin>top</YOrigin>
  </DataWindow>
  <Projection>EPSG:3857</Projection>
  <BlockSizeX>256</BlockSizeX><BlockSizeY>256</BlockSizeY><BandsCount>{bands}</BandsCount>
</GDAL_WMS>"""
    )
    return path


def stretch(item: dict, band: int) -> tuple[float, float]:
    """mean +- 2 stddev within min/max of the band's stored statistics."""
    stats = item["assets"]["data"]["raster:bands"][band - 1]["statistics"]
    return (
        max(stats["minimum"], stats["mean"] - 2 * stats["stddev"]),
        min(stats["maximum"], stats["mean"] + 2 * stats["stddev"]),
    )


def expected_false_color(item: dict, bounds, size: int) -> np.ndarray:
    """The COG's NIR, red, green warped onto a Web Mercator grid and stretched like the preset."""
    values = mercator_pixels(item["assets"]["data"]["href"], bounds, FALSE_COLOR, size)
    return np.stack(
        [
            np.clip((v - lo) * 255 / (hi - lo), 0, 255)
            for v, (lo, hi) in zip(values, (stretch(item, b) for b in FALSE_COLOR), strict=True)
        ]
    )


def assert_same_pixels(got: np.ndarray, expected: np.ndarray) -> None:
    """Band by band, equal up to nearest-neighbour resampling at the scene's texture."""
    for i, (g, e) in enumerate(zip(got.astype("float64"), expected, strict=True)):
        assert np.median(np.abs(g - e)) <= 3, i
        assert np.corrcoef(g.ravel(), e.ravel())[0, 1] > 0.95, i
