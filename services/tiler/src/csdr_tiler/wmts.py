"""Small WMTS capabilities: one layer per preset, WebMercatorQuad only, the real extent and zooms.

titiler's WMTS extension lists every tile matrix set it knows (190-390 KB, ~0.5 s here) and one
layer per set; QGIS needs one set, and wants the extent and zoom range to place and limit the
layer. Tile URLs carry the caller's `api_key` (QGIS sends no headers for WMTS tiles).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

import morecantile
from fastapi import APIRouter, Path, Query, Request, Response
from lxml import etree

from csdr_render.presets import Preset
from csdr_tiler.context import context_of
from csdr_tiler.dependencies import CatalogueDep, item_of, request_item_version
from csdr_tiler.zooms import Extent, collection_extent, item_extent

TMS_ID = "WebMercatorQuad"
WEB_MERCATOR = morecantile.tms.get(TMS_ID)
MEDIA_TYPE = "application/xml"
WMTS_NS = "http://www.opengis.net/wmts/1.0"
OWS_NS = "http://www.opengis.net/ows/1.1"
XLINK_NS = "http://www.w3.org/1999/xlink"
NSMAP = {None: WMTS_NS, "ows": OWS_NS, "xlink": XLINK_NS}

router = APIRouter()


@dataclass(frozen=True)
class Layer:
    """One WMTS layer: a preset and the URL template of its tiles."""

    preset: Preset
    template: str


def _w(tag: str) -> str:
    return f"{{{WMTS_NS}}}{tag}"


def _o(tag: str) -> str:
    return f"{{{OWS_NS}}}{tag}"


def _sub(
    parent: etree._Element, tag: str, text: str | None = None, **attrib: str
) -> etree._Element:
    element = etree.SubElement(parent, tag, attrib)
    if text is not None:
        element.text = text
    return element


def _limits(link: etree._Element, extent: Extent) -> None:
    """TileMatrixSetLimits: the tiles covering the extent at each zoom."""
    limits = _sub(link, _w("TileMatrixSetLimits"))
    west, south, east, north = extent.bounds
    for z in range(extent.minzoom, extent.maxzoom + 1):
        top_left = WEB_MERCATOR.tile(west, north, z)
        bottom_right = WEB_MERCATOR.tile(east, south, z)
        entry = _sub(limits, _w("TileMatrixLimits"))
        _sub(entry, _w("TileMatrix"), str(z))
        _sub(entry, _w("MinTileRow"), str(top_left.y))
        _sub(entry, _w("MaxTileRow"), str(bottom_right.y))
        _sub(entry, _w("MinTileCol"), str(top_left.x))
        _sub(entry, _w("MaxTileCol"), str(bottom_right.x))


def _tile_matrix_set(contents: etree._Element, extent: Extent) -> None:
    """WebMercatorQuad's levels from the extent's minzoom to its maxzoom."""
    tms = _sub(contents, _w("TileMatrixSet"))
    _sub(tms, _o("Identifier"), TMS_ID)
    _sub(tms, _o("SupportedCRS"), "urn:ogc:def:crs:EPSG::3857")
    for z in range(extent.minzoom, extent.maxzoom + 1):
        matrix = WEB_MERCATOR.matrix(z)
        element = _sub(tms, _w("TileMatrix"))
        _sub(element, _o("Identifier"), str(z))
        _sub(element, _w("ScaleDenominator"), repr(matrix.scaleDenominator))
        x0, y0 = matrix.pointOfOrigin
        _sub(element, _w("TopLeftCorner"), f"{x0!r} {y0!r}")
        _sub(element, _w("TileWidth"), str(matrix.tileWidth))
        _sub(element, _w("TileHeight"), str(matrix.tileHeight))
        _sub(element, _w("MatrixWidth"), str(matrix.matrixWidth))
        _sub(element, _w("MatrixHeight"), str(matrix.matrixHeight))


def capabilities(title: str, url: str, extent: Extent, layers: Sequence[Layer]) -> bytes:
    """The WMTS 1.0.0 capabilities document (RESTful encoding) for `layers` over `extent`."""
    root = etree.Element(_w("Capabilities"), {"version": "1.0.0"}, nsmap=NSMAP)
    service = _sub(root, _o("ServiceIdentification"))
    _sub(service, _o("Title"), title)
    _sub(service, _o("ServiceType"), "OGC WMTS")
    _sub(service, _o("ServiceTypeVersion"), "1.0.0")
    operations = _sub(root, _o("OperationsMetadata"))
    for name in ("GetCapabilities", "GetTile"):
        get = _sub(
            _sub(_sub(_sub(operations, _o("Operation"), name=name), _o("DCP")), _o("HTTP")),
            _o("Get"),
            **{f"{{{XLINK_NS}}}href": url},
        )
        constraint = _sub(get, _o("Constraint"), name="GetEncoding")
        _sub(_sub(constraint, _o("AllowedValues")), _o("Value"), "RESTful")
    contents = _sub(root, _w("Contents"))
    west, south, east, north = extent.bounds
    for layer in layers:
        element = _sub(contents, _w("Layer"))
        _sub(element, _o("Title"), layer.preset.title)
        box = _sub(element, _o("WGS84BoundingBox"), crs="urn:ogc:def:crs:OGC:2:84")
        _sub(box, _o("LowerCorner"), f"{west!r} {south!r}")
        _sub(box, _o("UpperCorner"), f"{east!r} {north!r}")
        _sub(element, _o("Identifier"), layer.preset.name)
        style = _sub(element, _w("Style"), isDefault="true")
        _sub(style, _o("Identifier"), "default")
        _sub(element, _w("Format"), "image/png")
        link = _sub(element, _w("TileMatrixSetLink"))
        _sub(link, _w("TileMatrixSet"), TMS_ID)
        _limits(link, extent)
        _sub(
            element,
            _w("ResourceURL"),
            format="image/png",
            resourceType="tile",
            template=layer.template,
        )
    _tile_matrix_set(contents, extent)
    _sub(root, _w("ServiceMetadataURL"), **{f"{{{XLINK_NS}}}href": url})
    return etree.tostring(root, encoding="utf-8", xml_declaration=True)


def _layers(request: Request, base: str, presets: dict[str, Preset]) -> list[Layer]:
    """A layer per preset, its tile URL under `base` with the caller's api_key, if any."""
    root = str(request.base_url).rstrip("/")
    key = request.query_params.get("api_key")
    query = f"?{urlencode({'api_key': key})}" if key else ""
    return [
        Layer(
            preset,
            f"{root}{base}/presets/{name}/tiles/{TMS_ID}/{{TileMatrix}}/{{TileCol}}/{{TileRow}}.png"
            f"{query}",
        )
        for name, preset in presets.items()
    ]


def _document(
    request: Request, title: str, base: str, extent: Extent, presets: dict[str, Preset]
) -> Response:
    body = capabilities(title, str(request.url), extent, _layers(request, base, presets))
    return Response(body, media_type=MEDIA_TYPE)


ApiKey = Annotated[str | None, Query(description="API key, carried into every tile URL")]


@router.get(
    "/collections/{collection_id}/items/{item_id}/presets/WMTSCapabilities.xml",
    response_class=Response,
    responses={200: {"content": {MEDIA_TYPE: {}}, "description": "WMTS capabilities"}},
    tags=["STAC Item"],
    summary="WMTS with one layer per preset of the item",
)
def item_wmts(
    request: Request,
    catalogue: CatalogueDep,
    collection_id: Annotated[str, Path(description="STAC Collection Identifier")],
    item_id: Annotated[str, Path(description="STAC Item Identifier")],
    api_key: ApiKey = None,
) -> Response:
    """One scene as WMTS layers, one per preset its bands allow."""
    item = item_of(request, collection_id, item_id)
    version = request_item_version(request, collection_id, item_id)
    presets = catalogue.item_presets(item, version)
    extent = item_extent(item)
    return _document(
        request, item.id, f"/collections/{collection_id}/items/{item_id}", extent, presets
    )


@router.get(
    "/collections/{collection_id}/presets/WMTSCapabilities.xml",
    response_class=Response,
    responses={200: {"content": {MEDIA_TYPE: {}}, "description": "WMTS capabilities"}},
    tags=["STAC Collection"],
    summary="WMTS with one layer per preset of the collection's mosaic",
)
def collection_wmts(
    request: Request,
    catalogue: CatalogueDep,
    collection_id: Annotated[str, Path(description="STAC Collection Identifier")],
    api_key: ApiKey = None,
) -> Response:
    """A collection's "latest, least cloudy first" mosaic as WMTS layers, one per preset."""
    presets = catalogue.collection_presets(collection_id)
    extent = collection_extent(catalogue, collection_id)
    return _document(request, collection_id, f"/collections/{collection_id}", extent, presets)


@router.get(
    "/searches/{search_id}/presets/WMTSCapabilities.xml",
    response_class=Response,
    responses={200: {"content": {MEDIA_TYPE: {}}, "description": "WMTS capabilities"}},
    tags=["STAC Search"],
    summary="WMTS with one layer per preset of a registered search's mosaic",
)
def search_wmts(
    request: Request,
    catalogue: CatalogueDep,
    search_id: Annotated[str, Path(description="PgSTAC Search Identifier (Hash)")],
    api_key: ApiKey = None,
) -> Response:
    """A registered search's mosaic as WMTS layers, one per preset of its first collection."""
    search = catalogue.search(search_id)
    collection = catalogue.search_collection(search_id, context_of(request).visible)
    presets = catalogue.collection_presets(collection)
    extent = collection_extent(catalogue, collection, search.bounds)
    return _document(request, search_id, f"/searches/{search_id}", extent, presets)
