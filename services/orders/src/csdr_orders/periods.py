"""The quota period and the clock: a period is a calendar year in UTC ("1000 scenes a year"), so
an order at 23:59:59 on 31 December counts in that year and one at 00:00 on 1 January in the next.
The clock is a function the app is built with, so tests can stand at any moment."""

from collections.abc import Callable
from datetime import UTC, date, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The real clock (UTC)."""
    return datetime.now(UTC)


def period_start(at: datetime) -> date:
    """The first day of the period holding the moment `at`."""
    return date(at.astimezone(UTC).year, 1, 1)


def resets_at(start: date) -> datetime:
    """When the period beginning on `start` ends and the next one's limit applies."""
    return datetime(start.year + 1, 1, 1, tzinfo=UTC)


def period_name(start: date) -> str:
    """How a period is shown: its year."""
    return str(start.year)


def iso(at: datetime) -> str:
    """RFC 3339 in UTC with a Z."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")
