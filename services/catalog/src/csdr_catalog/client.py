"""The STAC API client: stac-fastapi-pgstac's `CoreCrudClient`, subclassed because it has no hooks
for what this node does on every search before and after pgSTAC answers:

- pages read by SQL composed from pgSTAC's pieces (`item_search.py`: what `pgstac.search()`
  answers, faster) and their items served as upstream serves them (`features.py`); an items
  page checks its collection exists in the same statement as its items;

- CQL2 filters parsed once per distinct text (`filters.py`), Query extension operators translated
  to CQL2, bad `query`/`intersects` JSON and unknown sort fields answered 400, not 500 or 200;
- clients cannot pass pgSTAC runtime settings (`conf`) through the search body;
- `numberMatched` on every page unless `count=false` (`counts.py`);
- Fields extension responses served as `application/geo+json` (upstream returns a bare
  `JSONResponse` for them, media type `application/json`);
- the landing page links every collection as a `child`, and `/collections` without a `limit`
  lists them all (up to `collections_limit`), so a harvester can walk the catalog;
- searches, aggregations, the collections list and the landing page cover only the collections
  the caller may see (`access.py`);
- items point their local assets at the download route (`downloads.py`);
- items and collections link their map layers ("copy for QGIS": XYZ, TileJSON, WMTS) on this
  node's tiler, when it is configured (`csdr_render.links`).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import unquote_plus

import attr
import orjson
from asyncpg import Connection
from asyncpg.exceptions import DataError, InvalidDatetimeFormatError, RaiseError
from fastapi import HTTPException, Request, Response
from pydantic import ValidationError
from stac_fastapi.pgstac.core import CoreCrudClient
from stac_fastapi.pgstac.models.links import ItemCollectionLinks, PagingLinks
from stac_fastapi.pgstac.types.search import PgstacSearch
from stac_fastapi.types.errors import InvalidQueryParameter, NotFoundError
from stac_fastapi.types.requests import get_base_url
from stac_fastapi.types.stac import ItemCollection, LandingPage
from stac_pydantic.shared import BBox, MimeTypes

from csdr_catalog import filters
from csdr_catalog.access import restrict, visible_of
from csdr_catalog.counts import number_matched
from csdr_catalog.downloads import publish_assets
from csdr_catalog.features import PageFeatures
from csdr_catalog.item_search import COLLECTION_TYPE_SQL, ItemSearch
from csdr_catalog.queryables import KnownProperties
from csdr_catalog.search_params import check_bbox_order
from csdr_render.links import collection_map_links, item_map_links

GEOJSON = MimeTypes.geojson.value


def _as_geojson(result: Any) -> Response:
    """An answer of features as a GeoJSON response, serialised by orjson here: a plain dict would
    go through FastAPI's `jsonable_encoder`, ~40% of the process's CPU per 10-item page (py-spy),
    then through the standard library's json. Upstream's Fields answers are already responses."""
    if isinstance(result, Response):
        result.headers["content-type"] = GEOJSON
        return result
    return Response(orjson.dumps(result), media_type=GEOJSON)


def _check_geojson_text(name: str, text: str | None) -> None:
    """400 when a GET parameter that must hold GeoJSON does not parse as a JSON object."""
    if text is None:
        return
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidQueryParameter(f"{name} must be a GeoJSON geometry: {exc}") from exc
    if not isinstance(value, dict) or "type" not in value:
        raise InvalidQueryParameter(f"{name} must be a GeoJSON geometry object")


def _add_map_links(collection: Any, request: Request) -> None:
    """Append the collection mosaic's map links, when the tiler is known."""
    tiler_url = request.app.state.csdr_settings.tiler_url
    if tiler_url and isinstance(collection.get("links"), list) and "id" in collection:
        collection["links"] += collection_map_links(tiler_url, collection)


@attr.s
class CatalogClient(CoreCrudClient):
    """CoreCrudClient with this node's search conventions (see the module docstring)."""

    known_properties: KnownProperties = attr.ib(factory=lambda: KnownProperties(ttl_s=30.0))
    count_exact_below: int = attr.ib(default=100_000)
    count_stats_ttl_s: int = attr.ib(default=60)
    item_search: ItemSearch = attr.ib(factory=ItemSearch)

    async def landing_page(self, **kwargs: Any) -> LandingPage:
        """Upstream's landing page plus one `child` link per collection, for harvesters."""
        landing = await super().landing_page(**kwargs)
        request: Request = kwargs["request"]
        base_url = get_base_url(request)
        async with request.app.state.get_connection(request, "r") as conn:
            rows = await conn.fetch(
                "SELECT id, content->>'title' AS title FROM pgstac.collections"
                " WHERE coalesce(content->>'type', 'Collection') = 'Collection' ORDER BY id"
            )
        visible = visible_of(request)
        landing["links"].extend(
            {
                "rel": "child",
                "type": MimeTypes.json.value,
                "title": row["title"] or row["id"],
                "href": f"{base_url}collections/{row['id']}",
            }
            for row in rows
            if visible is None or row["id"] in visible
        )
        return landing

    async def all_collections(self, request: Request, **kwargs: Any) -> Any:
        """GET /collections, limited to the collections the caller may see; without a `limit`,
        a page of `collections_limit` (settings.py)."""
        if "limit" not in request.query_params:  # upstream's model fills in its default, 10
            kwargs["limit"] = request.app.state.csdr_settings.collections_limit
        result = await super().all_collections(
            request, visible_ids=restrict(None, visible_of(request)), **kwargs
        )
        if isinstance(result, dict):  # a Fields answer is a bare response: left as asked
            for collection in result.get("collections", []):
                _add_map_links(collection, request)
        return result

    async def get_collection(self, collection_id: str, request: Request, **kwargs: Any) -> Any:
        """GET /collections/{id}, with the collection mosaic's map links."""
        collection = await super().get_collection(collection_id, request, **kwargs)
        _add_map_links(collection, request)
        return collection

    def _clean_search_args(
        self,
        base_args: dict[str, Any],
        filter_query: str | None = None,
        filter_lang: str | None = None,
        count: bool | None = None,
        visible_ids: list[str] | None = None,
        offset: int | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Upstream's cleaning, with the CQL2 text parsed through our cache (and, for the
        collections list, pgSTAC's `ids` limited to the visible collections)."""
        if filter_query is not None:
            if filter_lang in (None, "cql2-text"):
                base_args["filter"] = filters.parse_cql2_text(filter_query)
            else:
                try:
                    expr = orjson.loads(filter_query)
                except orjson.JSONDecodeError as exc:
                    raise InvalidQueryParameter(f"Invalid CQL2 JSON filter: {exc}") from exc
                base_args["filter"] = filters.validate_cql2_json(expr)
            base_args["filter_lang"] = "cql2-json"
        if count is not None:
            base_args["count"] = count
        if offset is not None:
            base_args["_o"] = offset
        clean = super()._clean_search_args(base_args=base_args, **kwargs)
        if visible_ids is not None:  # set after cleaning, which would drop an empty list
            clean["ids"] = visible_ids
        return clean

    async def prepare_search(self, search_request: PgstacSearch, request: Request) -> bool:
        """Check and normalise a search in place (see the module docstring); True unless the
        client declined numberMatched (`count=false`). Aggregations use it too, so both read a
        search alike."""
        search_request.conf = None  # pgSTAC settings are the operator's, never the client's
        search_request.collections = restrict(search_request.collections, visible_of(request))
        check_bbox_order(search_request.bbox)
        fields = getattr(search_request, "fields", None)
        if fields is not None and fields.include:
            # Items are hydrated here, after pgSTAC applied `fields` (settings.py): the id and
            # collection pgSTAC keeps would be dropped again unless included by name.
            fields.include = set(fields.include) | {"id", "collection"}
        query = getattr(search_request, "query", None)
        expr = getattr(search_request, "filter_expr", None)
        if expr is not None and not isinstance(expr, dict):
            raise InvalidQueryParameter("filter must be a CQL2 JSON object")
        if expr is not None:
            filters.validate_cql2_json(expr)
        asked = getattr(search_request, "count", None)
        count = asked is not False  # every page says numberMatched unless told not to
        if asked is not None:
            search_request.count = None
        sortby = getattr(search_request, "sortby", None) or []
        if query or sortby:

            def connect() -> AbstractAsyncContextManager[Connection]:
                return request.app.state.get_connection(request, "r")

            await self.known_properties.check_sort_fields(connect, (s.field for s in sortby))
            types = await self.known_properties.types(connect)
        if query:
            search_request.query = None
            search_request.filter_expr = filters.and_filters(
                expr, filters.query_to_cql2(query, types)
            )
            search_request.filter_lang = "cql2-json"
        return count

    async def _search_base(
        self, search_request: PgstacSearch, request: Request, collection_id: str | None = None
    ) -> ItemCollection:
        """Check and normalise the search, read its page (`item_search.py`: what pgstac.search()
        answers, composed from pgSTAC's pieces), serve its items (`features.py`), add
        numberMatched unless declined. With `collection_id` (an items page), 404 unless that
        collection exists, as upstream's `get_collection` check answers."""
        count = await self.prepare_search(search_request, request)
        # Items leave pgSTAC dehydrated and are merged with their base item here (settings.py).
        search_request.conf = {"nohydrate": True}
        search = search_request.model_dump(mode="json", by_alias=True, exclude_none=True)
        offset = search.pop("_o", 0)  # ours (search_params.py), not pgSTAC's
        try:
            async with request.app.state.get_connection(request, "r") as conn:
                page = await self.item_search.search(
                    conn, search, collection_type_of=collection_id, offset=offset
                )
                matched = None
                if count:
                    matched = await number_matched(
                        conn,
                        search,
                        self.count_exact_below,
                        self.count_stats_ttl_s,
                        cache=not request.app.state.reads_on_replica,
                    )
        except InvalidDatetimeFormatError as exc:
            raise InvalidQueryParameter(
                f"Datetime parameter {search_request.datetime} is invalid."
            ) from exc
        except (RaiseError, DataError) as exc:
            # pgSTAC raises on searches it cannot run (an operator it lacks, a bad token);
            # PostgreSQL on values of the wrong type ('abc' compared with a number): both are the
            # request's fault.
            raise InvalidQueryParameter(f"pgSTAC cannot run this search: {exc}") from exc
        if collection_id is not None and page.collection_type != "Collection":
            raise NotFoundError(f"Collection {collection_id} does not exist.")
        fields = getattr(search_request, "fields", None)
        base_url, roots = get_base_url(request), request.app.state.asset_roots
        base_items: dict[str, dict[str, Any]] = {}

        async def base_item_of(collection: str) -> dict[str, Any]:
            if collection not in base_items:
                base_items[collection] = await self._get_base_item(collection, request=request)
            return base_items[collection]

        served = PageFeatures(
            base_url,
            include=fields.include if fields and fields.include else set(),
            exclude=fields.exclude if fields and fields.exclude else set(),
            strip_markers=request.app.state.settings.exclude_hydrate_markers,
            base_item_of=base_item_of,
        )
        tiler_url = request.app.state.csdr_settings.tiler_url
        features = []
        for row in page.features:
            feature = await served.item(row)
            if tiler_url and isinstance(feature.get("links"), list) and "id" in feature:
                feature["links"] += item_map_links(tiler_url, feature)
            publish_assets(feature, base_url, roots)
            features.append(feature)
        # Members in the order pgSTAC's jsonb answer has them (shorter names first), so pages
        # read the same byte for byte whichever way they were made.
        result: dict[str, Any] = {
            "type": "FeatureCollection",
            "links": await PagingLinks(request=request, next=page.next, prev=page.prev).get_links(),
        }
        if page.timing_ms is not None:
            result["timing"] = page.timing_ms
        result["features"] = features
        if page.number_matched is not None:
            result["numberMatched"] = page.number_matched
        result["numberReturned"] = len(features)
        if matched is not None:
            result["numberMatched"] = matched.number
            result["numberMatchedEstimated"] = matched.estimated
        return result  # type: ignore[return-value]

    async def get_search(
        self,
        request: Request,
        query: str | None = None,
        intersects: str | None = None,
        **kwargs: Any,
    ) -> Response:
        """GET /search, with `query` and `intersects` checked before upstream parses them."""
        if query is not None:
            query = orjson.dumps(filters.parse_query_text(query)).decode()
        _check_geojson_text("intersects", intersects)
        result = await super().get_search(request, query=query, intersects=intersects, **kwargs)
        return _as_geojson(result)

    async def post_search(
        self, search_request: PgstacSearch, request: Request, **kwargs: Any
    ) -> Response:
        """POST /search, answered as GeoJSON."""
        return _as_geojson(await super().post_search(search_request, request, **kwargs))

    async def item_collection(
        self,
        collection_id: str,
        request: Request,
        bbox: BBox | None = None,
        datetime: str | None = None,
        limit: int | None = None,
        query: str | None = None,
        fields: list[str] | None = None,
        sortby: str | None = None,
        filter_expr: str | None = None,
        filter_lang: str | None = None,
        token: str | None = None,
        **kwargs: Any,
    ) -> Response:
        """GET /collections/{id}/items: upstream's page, answered as GeoJSON, with `query`
        checked, and the collection's existence read in the same statement as the items (upstream
        asks for the whole collection document first)."""
        try:
            base_args = {
                "collections": [collection_id],
                "bbox": bbox,
                "datetime": datetime,
                "limit": limit,
                "token": token,
                # Read as upstream reads it, unquoted once more after the URL's own decoding.
                "query": (
                    orjson.loads(
                        unquote_plus(orjson.dumps(filters.parse_query_text(query)).decode())
                    )
                    if query
                    else None
                ),
            }
            clean = self._clean_search_args(
                base_args=base_args,
                filter_query=filter_expr,
                filter_lang=filter_lang,
                fields=fields,
                sortby=sortby,
                **kwargs,
            )
            try:
                search_request = self.pgstac_search_model(**clean)
            except ValidationError as exc:
                raise HTTPException(
                    status_code=400, detail=f"Invalid parameters provided {exc}"
                ) from exc
            result = await self._search_base(search_request, request, collection_id=collection_id)
        except (InvalidQueryParameter, HTTPException):
            # Upstream looks the collection up before reading the parameters: a missing
            # collection is a 404 whatever else is wrong with the request.
            await self._check_collection(collection_id, request)
            raise
        result["links"] = await ItemCollectionLinks(
            collection_id=collection_id, request=request
        ).get_links(extra_links=result["links"])
        return _as_geojson(result)

    async def _check_collection(self, collection_id: str, request: Request) -> None:
        """404 unless `collection_id` is a collection (upstream's get_collection check)."""
        async with request.app.state.get_connection(request, "r") as conn:
            kind = await conn.fetchval(COLLECTION_TYPE_SQL, collection_id)
        if kind != "Collection":
            raise NotFoundError(f"Collection {collection_id} does not exist.")
