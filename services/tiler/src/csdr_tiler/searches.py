"""The list of registered searches (mosaics), limited to those the caller may see.

Replaces titiler-pgstac's `add_search_list_route`, whose SQL cannot be narrowed from outside: a
search is listed when it names no collection or only collections the caller sees (the rule of
`/searches/{id}/info`, csdr_tiler.access), so neither the list nor its count tells of a
restricted collection. Same path, parameters and answer as upstream's.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from starlette.datastructures import QueryParams
from titiler.pgstac import model

from csdr_tiler.context import context_of

router = APIRouter()

PAGING = ("limit", "offset", "sortby")
# Derived searches (csdr_tiler.mosaics) are not of type mosaic: they are never listed.
MOSAICS = sql.SQL("metadata->>'type' = 'mosaic'")
VISIBLE = sql.SQL(
    "(coalesce(jsonb_array_length(search -> 'collections'), 0) = 0"
    " OR (search -> 'collections') <@ {})"
)


def _order_by(sortby: str | None) -> sql.Composable:
    """`[+|-]name,...`: lastused and usecount are columns, anything else a metadata key."""
    terms: list[sql.Composable] = []
    for term in (sortby or "").split(","):
        term = term.strip()
        if not term:
            continue
        name = term.lstrip("+-")
        column: sql.Composable = (
            sql.Identifier(name)
            if name in ("lastused", "usecount")
            else sql.SQL("metadata->>{}").format(sql.Literal(name))
        )
        direction = sql.SQL("DESC" if term.startswith("-") else "ASC")
        terms.append(sql.SQL("{} {}").format(column, direction))
    return sql.SQL("ORDER BY {}").format(sql.SQL(", ").join(terms)) if terms else sql.SQL("")


def _page_link(request: Request, rel: str, limit: int, offset: int) -> model.Link:
    query = QueryParams({**request.query_params, "limit": limit, "offset": offset})
    href = str(request.url_for("list_searches"))
    return model.Link(rel=rel, href=f"{href}?{query}")


@router.get(
    "/searches/",
    response_model=model.Infos,
    response_model_exclude_none=True,
    tags=["STAC Search"],
    operation_id=".searches.getMosaicList",  # upstream's ids, kept for clients
    responses={200: {"description": "List Mosaics in PgSTAC."}},
    summary="List the registered mosaics the caller may see",
)
@router.get(
    "/searches/list",
    response_model=model.Infos,
    response_model_exclude_none=True,
    tags=["STAC Search"],
    operation_id=".searches.getMosaicList-deprecated",
    responses={200: {"description": "List Mosaics in PgSTAC."}},
    deprecated=True,
)
def list_searches(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size limit")] = 10,
    offset: Annotated[int, Query(ge=0, description="Page offset")] = 0,
    sortby: Annotated[
        str | None, Query(description="[+|-]property,...: lastused, usecount or a metadata key")
    ] = None,
) -> model.Infos:
    """Registered mosaics; any other query parameter filters on a metadata property."""
    filters: list[sql.Composable] = [MOSAICS]
    filters += [
        sql.SQL("metadata->>{} = {}").format(sql.Literal(k), sql.Literal(v))
        for k, v in request.query_params.items()
        if k.lower() not in PAGING
    ]
    visible = context_of(request).visible
    if visible is not None:
        filters.append(VISIBLE.format(sql.Literal(Jsonb(sorted(visible)))))
    where = sql.SQL(" AND ").join(filters)
    with request.app.state.dbpool.connection() as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM pgstac.searches WHERE {}").format(where))
        matched = int(row.fetchone()[0])
        with conn.cursor(row_factory=class_row(model.Search)) as cur:
            found = cur.execute(
                sql.SQL("SELECT * FROM pgstac.searches WHERE {} {} LIMIT %s OFFSET %s").format(
                    where, _order_by(sortby)
                ),
                (limit, offset),
            ).fetchall()
    links = [_page_link(request, "self", limit, offset)]
    if offset + len(found) < matched:
        links.append(_page_link(request, "next", limit, offset + len(found)))
    if offset > 0:
        links.append(_page_link(request, "prev", limit, max(0, offset - limit)))
    return model.Infos(
        searches=[model.Info(search=s, links=_search_links(request, s.id)) for s in found],
        links=links,
        context=model.Context(returned=len(found), matched=matched, limit=limit),
    )


def _search_links(request: Request, search_id: str) -> list[model.Link]:
    info = request.url_for("info", search_id=search_id)
    tilejson: Any = request.url_for("tilejson", search_id=search_id, tileMatrixSetId="TMS")
    return [
        model.Link(rel="metadata", title="Mosaic metadata", href=str(info)),
        model.Link(
            rel="tilejson",
            title="Link for TileJSON (Template URL)",
            href=str(tilejson).replace("/TMS/", "/{tileMatrixSetId}/"),
            templated=True,
        ),
    ]
