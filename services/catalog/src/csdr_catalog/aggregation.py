"""STAC API Aggregation extension (https://github.com/stac-api-extensions/aggregation): counts over
any search, grouped by collection, platform, instrument, month of acquisition and cloud-cover
bucket, for portals and partners' usage reports.

A search is read exactly as /search reads it (`CatalogClient.prepare_search`), turned into a
WHERE clause by pgSTAC's own `stac_search_to_where`, and counted with GROUP BY over
`pgstac.items`. stac-fastapi ships the extension's routes and a client base class; the request
models here are the node's search models plus `aggregations`, so filters, query and the rest work
on /aggregate as on /search.
"""

from __future__ import annotations

from typing import Annotated, Any

import attr
import orjson
from asyncpg.exceptions import DataError, RaiseError
from fastapi import Query, Request
from pydantic import BaseModel, Field, create_model
from stac_fastapi.api.models import create_request_model
from stac_fastapi.extensions.aggregation import AggregationExtension
from stac_fastapi.extensions.aggregation.client import AsyncBaseAggregationClient
from stac_fastapi.types.errors import InvalidQueryParameter
from stac_fastapi.types.requests import get_base_url
from stac_fastapi.types.search import APIRequest, str2list

from csdr_catalog.client import CatalogClient

PROPS = "content->'properties'"
CLOUD_BUCKET_WIDTH = 10
# name -> (data_type, SQL giving (key, frequency) rows over the items matching {where}).
AGGREGATIONS: dict[str, tuple[str, str]] = {
    "total_count": ("integer", "SELECT count(*) FROM pgstac.items WHERE {where}"),
    "collection_frequency": (
        "frequency_distribution",
        "SELECT collection, count(*) FROM pgstac.items WHERE {where} GROUP BY 1 ORDER BY 2 DESC, 1",
    ),
    "platform_frequency": (
        "frequency_distribution",
        f"SELECT {PROPS}->>'platform', count(*) FROM pgstac.items WHERE {{where}}"
        " GROUP BY 1 ORDER BY 2 DESC, 1",
    ),
    "instruments_frequency": (
        "frequency_distribution",
        f"SELECT i, count(*) FROM pgstac.items,"
        f" jsonb_array_elements_text(coalesce({PROPS}->'instruments', '[]')) AS i"
        " WHERE {where} GROUP BY 1 ORDER BY 2 DESC, 1",
    ),
    "datetime_frequency": (
        "frequency_distribution",
        "SELECT to_char(date_trunc('month', datetime AT TIME ZONE 'UTC'), 'YYYY-MM'), count(*)"
        " FROM pgstac.items WHERE {where} GROUP BY 1 ORDER BY 1",
    ),
    "cloud_cover_frequency": (
        "frequency_distribution",
        # Buckets [0,10), [10,20), ... [90,100]: 100 % cloud falls in the last one.
        f"SELECT least(floor(({PROPS}->>'eo:cloud_cover')::float / {CLOUD_BUCKET_WIDTH}), 9),"
        f" count(*) FROM pgstac.items WHERE {{where}} AND {PROPS} ? 'eo:cloud_cover'"
        " GROUP BY 1 ORDER BY 1",
    ),
}
KEY_TYPES = {
    "collection_frequency": "string",
    "platform_frequency": "string",
    "instruments_frequency": "string",
    "datetime_frequency": "datetime",
    "cloud_cover_frequency": "numeric",
}
NOT_A_FILTER = ("aggregations", "limit", "token", "sortby", "fields", "conf", "count")


def _bucket(name: str, key: Any, frequency: int) -> dict[str, Any]:
    """One bucket of a frequency distribution, in the extension's shape."""
    if name == "cloud_cover_frequency":
        low = int(key) * CLOUD_BUCKET_WIDTH
        return {
            "key": f"{low}-{low + CLOUD_BUCKET_WIDTH}",
            "data_type": "numeric",
            "frequency": frequency,
            "from": low,
            "to": low + CLOUD_BUCKET_WIDTH,
        }
    if name == "datetime_frequency":
        key = f"{key}-01T00:00:00Z"
    return {"key": key, "data_type": KEY_TYPES[name], "frequency": frequency}


def _links(request: Request) -> list[dict[str, str]]:
    return [
        {"rel": "root", "type": "application/json", "href": get_base_url(request)},
        {"rel": "self", "type": "application/json", "href": str(request.url)},
    ]


@attr.s
class AggregationClient(AsyncBaseAggregationClient):
    """Counts over a search, computed in PostgreSQL."""

    catalog: CatalogClient = attr.ib()

    async def get_aggregations(  # type: ignore[override]
        self, collection_id: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """The aggregations this node computes."""
        return {
            "type": "AggregationCollection",
            "aggregations": [
                {"name": name, "data_type": data_type}
                for name, (data_type, _) in AGGREGATIONS.items()
            ],
            "links": _links(kwargs["request"]),
        }

    async def aggregate(  # type: ignore[override]
        self, search_request: BaseModel | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Compute the named aggregations (all of them when none is named) over a search."""
        request: Request = kwargs.pop("request")
        if search_request is None:
            asked = kwargs.get("aggregations")
            search_request = self._get_to_search(kwargs)
        else:
            asked = getattr(search_request, "aggregations", None)
        names = list(asked or AGGREGATIONS)
        unknown = [n for n in names if n not in AGGREGATIONS]
        if unknown:
            raise InvalidQueryParameter(
                f"aggregations: unknown {unknown}; available: {', '.join(AGGREGATIONS)}"
            )
        if collection_id := request.path_params.get("collection_id"):
            search_request.collections = [collection_id]  # type: ignore[attr-defined]
        await self.catalog.prepare_search(search_request, request)
        search = search_request.model_dump(mode="json", by_alias=True, exclude_none=True)
        search = {k: v for k, v in search.items() if k not in NOT_A_FILTER}
        results = []
        try:
            async with request.app.state.get_connection(request, "r") as conn:
                where = await conn.fetchval(
                    "SELECT pgstac.stac_search_to_where($1::text::jsonb)",
                    orjson.dumps(search).decode(),
                )
                for name in names:
                    data_type, sql = AGGREGATIONS[name]
                    # `where` is pgSTAC's own rendering of the search, literals quoted by it.
                    rows = await conn.fetch(sql.format(where=where))
                    results.append(self._result(name, data_type, rows))
        except (RaiseError, DataError) as exc:
            raise InvalidQueryParameter(f"pgSTAC cannot run this search: {exc}") from exc
        return {"type": "AggregationCollection", "aggregations": results, "links": _links(request)}

    def _get_to_search(self, params: dict[str, Any]) -> BaseModel:
        """A GET request's parameters as the POST search model, read as GET /search reads them."""
        base_args = {
            key: params.get(key) for key in ("collections", "ids", "bbox", "limit", "token")
        }
        if params.get("query"):
            base_args["query"] = orjson.loads(params["query"])
        clean = self.catalog._clean_search_args(
            base_args=base_args,
            intersects=params.get("intersects"),
            datetime=params.get("datetime"),
            filter_query=params.get("filter_expr"),
            filter_lang=params.get("filter_lang"),
        )
        return self.catalog.pgstac_search_model(**clean)

    @staticmethod
    def _result(name: str, data_type: str, rows: list[Any]) -> dict[str, Any]:
        if name == "total_count":
            return {"name": name, "data_type": data_type, "value": rows[0][0]}
        return {
            "name": name,
            "data_type": data_type,
            "buckets": [_bucket(name, key, freq) for key, freq in rows],
        }


def _aggregations(
    val: Annotated[str | None, Query(description="Comma-separated aggregation names.")] = None,
) -> list[str] | None:
    return str2list(val)


@attr.s
class AggregationsGet(APIRequest):
    """The `aggregations` GET parameter (comma-separated names)."""

    aggregations: list[str] | None = attr.ib(default=None, converter=_aggregations)


def aggregation_extension(
    catalog: CatalogClient, search_get: type[APIRequest], search_post: type[BaseModel]
) -> AggregationExtension:
    """The extension with request models built on the node's own search models."""
    extension = AggregationExtension(client=AggregationClient(catalog=catalog))
    mixins: list[type[APIRequest]] = [AggregationsGet]
    extension.GET = create_request_model(  # type: ignore[assignment]
        "AggregateGetRequest", base_model=search_get, mixins=mixins, request_type="GET"
    )
    extension.POST = create_model(
        "AggregatePostRequest",
        aggregations=(list[str] | None, Field(None, description="Aggregations to compute.")),
        __base__=search_post,
    )
    return extension
