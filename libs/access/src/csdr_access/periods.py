"""Quota periods and the clock. A period is a year in UTC: the calendar year by default ("1000
scenes a year"), or, for an organisation whose agreement names a start date, the year from that
date's anniversary (1 April: 1 April - 31 March). A period begins at 00:00 UTC on its first day,
so an order at 23:59:59 on its last day counts in it and one at 00:00 the next day in the next.
The clock is a function the apps are built with, so tests can stand at any moment."""

from __future__ import annotations

import calendar
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The real clock (UTC)."""
    return datetime.now(UTC)


def _anniversary(year: int, anchor: date) -> date:
    """The anchor's month and day in `year` (29 February is the 28th in other years)."""
    last = calendar.monthrange(year, anchor.month)[1]
    return date(year, anchor.month, min(anchor.day, last))


def period_start(at: datetime, anchor: date | None = None) -> date:
    """The first day of the period holding the moment `at`: 1 January, or the latest
    anniversary of the agreement's start date `anchor` on or before it."""
    day = at.astimezone(UTC).date()
    if anchor is None:
        return date(day.year, 1, 1)
    start = _anniversary(day.year, anchor)
    return start if start <= day else _anniversary(day.year - 1, anchor)


def year_starting(year: int, anchor: date | None = None) -> date:
    """The first day of the period that begins in `year`."""
    return date(year, 1, 1) if anchor is None else _anniversary(year, anchor)


def resets_at(start: date, anchor: date | None = None) -> datetime:
    """When the period beginning on `start` ends and the next one's limit applies."""
    following = (
        date(start.year + 1, 1, 1) if anchor is None else _anniversary(start.year + 1, anchor)
    )
    return datetime(following.year, following.month, following.day, tzinfo=UTC)


def period_name(start: date, anchor: date | None = None) -> str:
    """How a period is shown: its year for a calendar year, else its first and last days
    (`2026-04-01/2027-03-31`)."""
    if anchor is None or (anchor.month, anchor.day) == (1, 1):
        return str(start.year)
    last = resets_at(start, anchor).date() - timedelta(days=1)
    return f"{start.isoformat()}/{last.isoformat()}"


def iso(at: datetime) -> str:
    """RFC 3339 in UTC with a Z."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")
