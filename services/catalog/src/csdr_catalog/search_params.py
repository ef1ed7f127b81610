"""Request parameters this node adds to, or reads more strictly than, stac-fastapi's search models.

stac-fastapi-pgstac builds its POST /search model from `PgstacSearch` plus each enabled
extension's request model, and offers no hook to change that base class. An extension's request
model is its designed way to add parameters, and fields of a later extension replace earlier ones
of the same name (`create_request_model` copies each model's fields in order), so this extension,
registered last, carries our conventions:

- `count`: `numberMatched` is on every page unless `count=false` (see `counts.py`);
- `_o`: the first page starts that many items in (0-based), as GEO DAB's STAC accessor pages
  (`_o=<start-1>&limit=<n>`, never following `next`); a page after a token ignores it, so the
  `next` link of an offset page, which keeps `_o` in its query string, goes on from that page;
- `datetime` intervals given as dates (`2020-01-01/2020-02-01`): whole UTC days, as harvesters
  such as GEO DAB send them (RFC 3339 wants a time, so upstream answers 400); in POST bodies
  here, in GET query strings by `WholeDaysMiddleware`;
- `collections` given as one string (stac-api-validator sends it so) is a one-element list;
- `limit` must be an integer: `1e9` is a typo to report, not 1,000,000,000 to cap;
- `bbox` must have 4 or 6 numbers, said in one sentence;
- `fields: null` is an error, not "no fields" (the Fields extension defines no null form);
- `query` accepts every operator of the Query extension, translated to CQL2 in `filters.py`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

import attr
from fastapi import FastAPI, Query
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field
from stac_fastapi.extensions.fields.request import PostFieldsExtension
from stac_fastapi.types.errors import InvalidQueryParameter
from stac_fastapi.types.extension import ApiExtension
from stac_fastapi.types.search import APIRequest, Limit
from stac_pydantic.shared import validate_datetime
from starlette.types import ASGIApp, Receive, Scope, Send

DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
DATE_ONLY = re.compile(r"(^\d{4}-\d{2}-\d{2}/)|(/\d{4}-\d{2}-\d{2}$)")


def _one_or_many(value: object) -> object:
    """A single collection id is a list of one."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


def _integer_limit(value: object) -> object:
    """Reject a limit that is not written as an integer (JSON `1e9` is a float)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"limit must be a positive integer, got {value!r}")
    return value


def check_bbox_order(bbox: tuple[float, ...] | None) -> None:
    """A bbox's south edge must not lie north of its north edge (STAC API Item Search: 400)."""
    if bbox is None:
        return
    south, north = (bbox[1], bbox[3]) if len(bbox) == 4 else (bbox[1], bbox[4])
    if south > north:
        raise InvalidQueryParameter(f"bbox: south ({south}) is north of north ({north})")


def _bbox_length(value: object) -> object:
    """Name the rule a bbox breaks before pydantic lists every tuple shape it tried."""
    if isinstance(value, list | tuple) and len(value) not in (4, 6):
        raise ValueError(f"bbox must have 4 or 6 numbers, got {len(value)}")
    return value


def _fields_not_null(value: object) -> object:
    """`{"fields": null}` is not a Fields extension request."""
    if value is None:
        raise ValueError("fields must be an object with 'include' and/or 'exclude' lists")
    return value


# The Fields extension's default set, served when `include` is given empty (or null) next to an
# `exclude` (https://github.com/stac-api-extensions/fields#includeexclude-semantics, rule 4).
DEFAULT_FIELDS = frozenset(
    {"type", "stac_version", "id", "geometry", "bbox", "links", "assets", "properties.datetime"}
)


def _fields_semantics(value: PostFieldsExtension) -> PostFieldsExtension:
    """Give `include: []` beside an `exclude` its meaning (the default set minus the exclusions),
    and keep `type` in every Feature: GeoJSON requires it (RFC 7946, 3.2)."""
    exclude = value.exclude or set()
    if "include" in value.model_fields_set and not value.include and exclude:
        value.include = {
            f for f in DEFAULT_FIELDS if not any(f == e or f.startswith(e + ".") for e in exclude)
        }
    if value.include:
        value.include.add("type")
    return value


def whole_days(value: object) -> object:
    """Date-only interval ends as whole UTC days: a start date is its first instant, an end date
    its last (`2020-01-01/2020-01-01` is that day); date-times pass unchanged."""
    if not isinstance(value, str) or not value:
        return value
    parts = value.split("/")
    if len(parts) != 2:
        # A lone date stays an error: stac-api-validator requires a 400 for `datetime=1985-04-12`
        # (the STAC API spec asks for an RFC 3339 date-time). Harvesters send intervals.
        return value
    start, end = parts
    if DAY.fullmatch(start):
        start = f"{start}T00:00:00Z"
    if DAY.fullmatch(end):
        end = f"{end}T23:59:59.999999Z"
    return f"{start}/{end}"


class WholeDaysMiddleware:
    """Reads a GET request's date-only `datetime` interval ends as whole UTC days (`whole_days`)
    before stac-fastapi's GET models see them: their `datetime` field cannot be replaced by an
    extension (attrs keeps the base model's field), and its validator wants date-times."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Rewrite the query string's `datetime`, if any, and pass the request on."""
        if scope["type"] == "http" and b"datetime=" in scope.get("query_string", b""):
            pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            if any(k == "datetime" and DATE_ONLY.search(v) for k, v in pairs):
                pairs = [(k, str(whole_days(v)) if k == "datetime" else v) for k, v in pairs]
                scope = {**scope, "query_string": urlencode(pairs).encode("latin-1")}
        await self.app(scope, receive, send)


def _count_flag(
    count: Annotated[
        bool | None,
        Query(description="numberMatched (estimated above a threshold); false leaves it out."),
    ] = None,
) -> bool | None:
    return count


def _offset_param(
    offset: Annotated[
        int | None,
        Query(
            alias="_o",
            ge=0,
            description="Items to skip before the first page (0-based offset, as GEO DAB "
            "pages); ignored on a page after a token.",
        ),
    ] = None,
) -> int | None:
    return offset


@attr.s
class ConventionsGetRequest(APIRequest):
    """GET parameters of our own: `count`, `_o`."""

    count: bool | None = attr.ib(default=None, converter=_count_flag)
    offset: int | None = attr.ib(default=None, converter=_offset_param)


class ConventionsPostRequest(BaseModel):
    """POST fields of our own, and stricter readings of upstream ones."""

    count: bool | None = Field(
        None, description="numberMatched (estimated above a threshold); false leaves it out."
    )
    offset: int | None = Field(
        None,
        ge=0,
        alias="_o",
        description="Items to skip before the first page (0-based); ignored after a token.",
    )
    collections: Annotated[list[str] | None, BeforeValidator(_one_or_many)] = None
    datetime: Annotated[
        str | None, BeforeValidator(whole_days), AfterValidator(validate_datetime)
    ] = None
    limit: Annotated[Limit | None, BeforeValidator(_integer_limit)] = Field(
        10, description="Items per page, 1..10000; larger values are served as 10000."
    )
    bbox: Annotated[
        tuple[float, float, float, float] | tuple[float, float, float, float, float, float] | None,
        BeforeValidator(_bbox_length),
    ] = None
    fields: Annotated[
        PostFieldsExtension | None,
        BeforeValidator(_fields_not_null),
        AfterValidator(_fields_semantics),
    ] = Field(PostFieldsExtension(), description="Include or exclude fields from items body.")
    query: dict[str, dict[str, Any]] | None = Field(
        None, description="Query extension: {property: {operator: value}}."
    )


@attr.s
class SearchConventionsExtension(ApiExtension):
    """Carries our search parameters into stac-fastapi's request models; adds no routes."""

    GET = ConventionsGetRequest
    POST = ConventionsPostRequest

    def register(self, app: FastAPI) -> None:
        """Nothing to register: the models are merged by stac-fastapi."""
