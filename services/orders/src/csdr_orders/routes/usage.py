"""`/quota` (the caller's quota now, per class) and `/stats/usage` (usage statistics: scenes in
the catalogue over the area, and the ledger's; JSON or CSV). Reading them is free."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from csdr_access import charging
from csdr_access.periods import iso, period_start, resets_at
from csdr_orders import stats
from csdr_orders.access import PrincipalDep, org_of
from csdr_service.pools import PoolDep

router = APIRouter(tags=["Quota and usage"])


async def _org_named(pool: Any, name: str) -> int:
    org_id = await pool.fetchval("SELECT id FROM csdr.organisations WHERE name = $1", name)
    if org_id is None:
        raise HTTPException(404, f"no organisation named {name!r}")
    return int(org_id)


@router.get("/quota", summary="The organisation's quota now: limit, used, reserved, remaining")
async def get_quota(
    request: Request,
    pool: PoolDep,
    principal: PrincipalDep,
    organisation: Annotated[
        str | None, Query(max_length=200, description="Another organisation (administrators)")
    ] = None,
) -> dict[str, Any]:
    """Each class's numbers for the current period, and when they reset."""
    settings, at = request.app.state.settings, request.app.state.clock()
    if organisation is not None and not principal.is_admin:
        raise HTTPException(403, "only administrators read another organisation's quota")
    org_id = await _org_named(pool, organisation) if organisation else org_of(principal)
    async with pool.acquire() as conn:
        classes = await charging.snapshot(conn, org_id, at, settings.default_quota)
    numbers = classes[0].as_dict()
    return {
        "organisation": classes[0].organisation,
        "period": numbers["period"],
        "resets_at": numbers["resets_at"],
        "quotas": [q.as_dict() for q in classes],
    }


@router.get(
    "/stats/summary",
    summary="Scenes ordered, released, downloaded per country and year (when switched on)",
    responses={404: {"description": "The node does not publish the summary"}},
)
async def public_summary(
    request: Request,
    pool: PoolDep,
    year: Annotated[int | None, Query(ge=1970, le=9999)] = None,
) -> dict[str, Any]:
    """Anonymous: no key needed, no organisation named (`CSDR_ORDERS_PUBLIC_SUMMARY`)."""
    if not request.app.state.settings.public_summary:
        raise HTTPException(404, "this node does not publish a usage summary")
    async with pool.acquire() as conn:
        return {"rows": await stats.summary(conn, year)}


def _moment(value: str, name: str) -> datetime:
    """A date (midnight UTC) or an RFC 3339 date-time."""
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time.min, UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(
            400, f"{name}: not a date (YYYY-MM-DD) or date-time: {value!r}"
        ) from None
    if moment.tzinfo is None:
        raise HTTPException(400, f"{name}: a date-time needs a time zone (Z or +hh:mm)")
    return moment


@router.get(
    "/stats/usage",
    summary="Scenes in the catalogue over the area (source), ordered, released and downloaded,"
    " grouped, with totals (JSON or CSV)",
    responses={200: {"content": {"text/csv": {}}}},
)
async def usage(
    request: Request,
    pool: PoolDep,
    principal: PrincipalDep,
    from_: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    to: Annotated[str | None, Query(max_length=40)] = None,
    group_by: Annotated[str, Query(max_length=200)] = "organisation",
    format: Literal["json", "csv"] = "json",
    organisation: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """From (inclusive) to (exclusive), default the current period; an organisation sees its own
    rows only, administrators everyone's (or one organisation's). `source` counts the scenes
    (by their own datetime) over each organisation's area that it may see: once per country, or
    per organisation in a report per organisation."""
    settings, at = request.app.state.settings, request.app.state.clock()
    groups = [g.strip() for g in group_by.split(",") if g.strip()]
    unknown = [g for g in groups if g not in stats.GROUPS]
    if unknown or len(set(groups)) != len(groups):
        raise HTTPException(
            400,
            f"group_by: {', '.join(unknown) or 'a repeated name'} is not one of"
            f" {', '.join(stats.GROUPS)}",
        )
    if principal.is_admin:
        org_id = await _org_named(pool, organisation) if organisation else None
    elif organisation is not None and organisation != principal.org:
        raise HTTPException(403, "only administrators read another organisation's usage")
    else:
        org_id = org_of(principal)
    # The default range: the organisation's current period (everyone's: the calendar year).
    anchor = await charging.anchor_of(pool, org_id) if org_id is not None else None
    period = period_start(at, anchor)
    start = _moment(from_, "from") if from_ else datetime.combine(period, time.min, UTC)
    end = _moment(to, "to") if to else resets_at(period, anchor)
    if start >= end:
        raise HTTPException(400, "from must be before to")
    async with pool.acquire() as conn:
        report = await stats.usage(conn, start, end, groups, org_id, at, settings.default_quota)
    report = {"from": iso(start), "to": iso(end), **report}
    if format == "csv":
        return PlainTextResponse(stats.as_csv(report), media_type="text/csv")
    return JSONResponse(report)
