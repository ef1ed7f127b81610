"""`csdr-admin quota`: an organisation's yearly scene quota per class and the date its years run
from (`set`, `show`), which quota class a collection counts against (`class`), and whether an
organisation's orders wait for an administrator's approval (`approval`). Orders and downloads
are judged against these (csdr_access.charging); without a limit set, an organisation has
DEFAULT_SCENES per class and year (or `CSDR_ORDERS_DEFAULT_QUOTA`). Every change is written to
the audit log."""

from __future__ import annotations

import argparse
import os
import re
from datetime import date
from typing import Any

import psycopg
from psycopg.rows import dict_row

from csdr_access.admin import AdminError, _org_id, audit
from csdr_access.periods import iso, period_name, period_start, resets_at, utc_now, year_starting

DEFAULT_SCENES = 1000
"""Scenes per organisation, class and year: "1000 scenes/year to each member state"."""
APPROVAL_MODES = ("auto", "manual")
CLASS_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


def default_scenes() -> int:
    """The default limit, as the orders service reads it."""
    return int(os.environ.get("CSDR_ORDERS_DEFAULT_QUOTA", DEFAULT_SCENES))


def _check_class(quota_class: str) -> None:
    if not CLASS_PATTERN.match(quota_class):
        raise AdminError(f"class must be lower-case letters, digits, - or _, not {quota_class!r}")


def set_period(conn: psycopg.Connection, org: str, start: date | None, actor: str) -> None:
    """Run an organisation's quota years from the anniversary of `start` (an agreement's start
    date); None: calendar years. Counters of the period holding now start afresh when its
    first day moves."""
    with conn.transaction():
        conn.execute(
            "UPDATE csdr.organisations SET quota_period_from = %s WHERE id = %s",
            (start, _org_id(conn, org)),
        )
        value = start.isoformat() if start else None
        audit(conn, actor, "quota.period", {"org": org, "from": value})


def set_quota(
    conn: psycopg.Connection, org: str, scenes: int, quota_class: str, actor: str
) -> None:
    """Set an organisation's limit for a class (scenes per year)."""
    if scenes < 0:
        raise AdminError(f"a quota is a number of scenes, 0 or more, not {scenes}")
    _check_class(quota_class)
    with conn.transaction():
        conn.execute(
            "INSERT INTO csdr.quota_limits (org_id, class, scenes) VALUES (%s, %s, %s)"
            " ON CONFLICT (org_id, class) DO UPDATE SET scenes = excluded.scenes,"
            " updated_at = now()",
            (_org_id(conn, org), quota_class, scenes),
        )
        audit(conn, actor, "quota.set", {"org": org, "class": quota_class, "scenes": scenes})


def set_class(conn: psycopg.Connection, collection: str, quota_class: str, actor: str) -> None:
    """Count a collection's scenes against a quota class."""
    _check_class(quota_class)
    with conn.transaction():
        conn.execute(
            "INSERT INTO csdr.quota_classes (collection, class) VALUES (%s, %s)"
            " ON CONFLICT (collection) DO UPDATE SET class = excluded.class",
            (collection, quota_class),
        )
        audit(conn, actor, "quota.class", {"collection": collection, "class": quota_class})


def set_approval(conn: psycopg.Connection, org: str, mode: str, actor: str) -> None:
    """`manual`: the organisation's orders wait for an administrator; `auto`: accepted at once."""
    if mode not in APPROVAL_MODES:
        raise AdminError(f"approval must be one of {', '.join(APPROVAL_MODES)}, not {mode!r}")
    with conn.transaction():
        org_id = _org_id(conn, org)
        if mode == "manual":
            conn.execute(
                "INSERT INTO csdr.manual_approval (org_id) VALUES (%s) ON CONFLICT DO NOTHING",
                (org_id,),
            )
        else:
            conn.execute("DELETE FROM csdr.manual_approval WHERE org_id = %s", (org_id,))
        audit(conn, actor, "quota.approval", {"org": org, "approval": mode})


def show(conn: psycopg.Connection, org: str | None, year: int | None) -> list[dict[str, Any]]:
    """Limit, used, reserved and remaining per organisation and class for the period each
    organisation's year `year` begins (1 January, or its agreement's anniversary); None: the
    period holding now."""
    with conn.cursor(row_factory=dict_row) as cur:
        orgs = cur.execute(
            "SELECT id, name, quota_period_from FROM csdr.organisations"
            " WHERE %(org)s::text IS NULL OR name = %(org)s ORDER BY name",
            {"org": org},
        ).fetchall()
        if org is not None and not orgs:
            raise AdminError(f"no organisation named {org!r} (see `csdr-admin org list`)")
        rows = []
        for o in orgs:
            anchor = o["quota_period_from"]
            start = period_start(utc_now(), anchor) if year is None else year_starting(year, anchor)
            found = cur.execute(
                "WITH keys AS ("
                "  SELECT class FROM csdr.quota_limits WHERE org_id = %(id)s"
                "  UNION SELECT class FROM csdr.quota_usage"
                "   WHERE org_id = %(id)s AND period_start = %(p)s"
                "  UNION SELECT 'all')"
                " SELECT k.class, l.scenes AS limit_set,"
                "  coalesce(u.committed, 0) AS used, coalesce(u.reserved, 0) AS reserved"
                " FROM keys k"
                " LEFT JOIN csdr.quota_limits l ON l.org_id = %(id)s AND l.class = k.class"
                " LEFT JOIN csdr.quota_usage u ON u.org_id = %(id)s AND u.class = k.class"
                "  AND u.period_start = %(p)s ORDER BY k.class",
                {"id": o["id"], "p": start},
            ).fetchall()
            for row in found:
                row["org"] = o["name"]
                row["period"] = period_name(start, anchor)
                row["resets_at"] = iso(resets_at(start, anchor))
            rows += found
    default = default_scenes()
    for row in rows:
        limit = default if row["limit_set"] is None else row["limit_set"]
        row["limit"] = f"{limit}" if row.pop("limit_set") is not None else f"{limit} (default)"
        row["remaining"] = max(0, limit - row["used"] - row["reserved"])
    return rows


def add_parsers(groups: Any) -> None:
    """The `quota` command group of csdr-admin."""
    quota = groups.add_parser("quota", help="yearly scene quotas").add_subparsers(
        dest="verb", required=True
    )
    set_ = quota.add_parser("set", help="set an organisation's scenes per year")
    set_.add_argument("org")
    set_.add_argument("scenes", type=int)
    set_.add_argument("--class", dest="quota_class", default="all", help="default: all")
    years = set_.add_mutually_exclusive_group()
    years.add_argument(
        "--from",
        dest="period_from",
        type=date.fromisoformat,
        help="the agreement's start date (YYYY-MM-DD): years run from its anniversary",
    )
    years.add_argument("--calendar", action="store_true", help="years are calendar years (UTC)")
    show_ = quota.add_parser("show", help="limit, used, reserved, remaining")
    show_.add_argument("org", nargs="?")
    show_.add_argument(
        "--year", type=int, help="the period beginning that year (default: the current one)"
    )
    approval = quota.add_parser(
        "approval", help="whether an organisation's orders wait for an admin"
    )
    approval.add_argument("org")
    approval.add_argument("mode", choices=APPROVAL_MODES)
    class_ = quota.add_parser("class", help="count a collection against a quota class")
    class_.add_argument("collection")
    class_.add_argument("quota_class", metavar="class")


def run(
    args: argparse.Namespace, conn: psycopg.Connection, actor: str
) -> list[dict[str, Any]] | str:
    """Carry out one `quota` command; what to print (rows for `show`)."""
    match args.verb:
        case "set":
            set_quota(conn, args.org, args.scenes, args.quota_class, actor)
            said = f"{args.org} may order {args.scenes} scenes of class {args.quota_class} a year"
            if args.period_from is not None or args.calendar:
                set_period(conn, args.org, args.period_from, actor)
                start = args.period_from
                said += f", years from {start:%d %B}" if start else ", calendar years"
            return said
        case "class":
            set_class(conn, args.collection, args.quota_class, actor)
            return f"{args.collection} counts against quota class {args.quota_class}"
        case "approval":
            set_approval(conn, args.org, args.mode, actor)
            return f"orders of {args.org}: {args.mode} approval"
        case "show":
            return show(conn, args.org, args.year)
    raise AssertionError(f"unhandled command quota {args.verb}")
