"""What QGIS builds an XYZ layer on, for tests: GDAL's WMS driver with a TMS service description."""

from pathlib import Path

import morecantile

HALF_WORLD = 20037508.342789244  # WebMercatorQuad's half width, metres
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")


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
