"""The quota rule, for orders (csdr_orders) and downloads (the catalog) alike: a scene is charged
once per organisation, quota class and period, whichever way it first reaches the organisation.
A collection belongs to a class (csdr.quota_classes, default `all`); a limit is set per
organisation and class (`csdr-admin quota set`, else the default); the period is the
organisation's (csdr_access.periods, `csdr-admin quota period`). The counter row of
(organisation, class, period) is locked while a charge is judged, so an order and a download
racing for the last scene are judged one after the other and never overrun.

A download is charged when it reads a full-resolution asset (role `data`) of a quota-governed
collection (any policy but `public`) for an organisation's key; administrators' keys and keys
with the `mirror` scope (a partner node mirroring or tiling through this one) are not charged.
A scene the organisation holds this period (ordered, or downloaded before) is free; its first
download is one `downloaded` row of the ledger either way."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from csdr_access import ledger
from csdr_access.periods import iso, period_name, period_start, resets_at
from csdr_access.principals import Principal

if TYPE_CHECKING:
    import asyncpg

DEFAULT_CLASS = "all"
MIRROR_SCOPE = "mirror"
"""A key scope: a partner node's reads (mirror copies, proxied tiles) are not charged."""
FULL_RESOLUTION = "data"
"""The asset role whose download is charged (thumbnails, overviews, metadata stay free)."""


@dataclass(frozen=True)
class Quota:
    """One class's numbers for an organisation in a period."""

    org_id: int
    organisation: str
    quota_class: str
    period: date
    limit: int
    used: int
    reserved: int
    anchor: date | None = None
    """The agreement's start date the period runs from (None: calendar years)."""

    @property
    def remaining(self) -> int:
        """Scenes the organisation may still receive."""
        return max(0, self.limit - self.used - self.reserved)

    def as_dict(self) -> dict[str, Any]:
        """The numbers as every answer shows them."""
        return {
            "organisation": self.organisation,
            "class": self.quota_class,
            "period": period_name(self.period, self.anchor),
            "limit": self.limit,
            "used": self.used,
            "reserved": self.reserved,
            "remaining": self.remaining,
            "resets_at": iso(resets_at(self.period, self.anchor)),
        }

    def refusal(self, requested: int) -> dict[str, Any] | None:
        """The problem fields when `requested` more scenes do not fit, else None."""
        return {**self.as_dict(), "requested": requested} if requested > self.remaining else None


class OverQuota(Exception):
    """The scenes asked for do not fit the organisation's quota (HTTP 403); `fields` are the
    problem body's numbers (limit, used, reserved, remaining, requested, resets_at)."""

    def __init__(self, description: str, fields: dict[str, Any]) -> None:
        super().__init__(description)
        self.fields = fields


def refusal_text(refusal: Mapping[str, Any], what: str) -> str:
    """Why `what` was refused, with the numbers."""
    return (
        f"{what} needs {refusal['requested']} scenes of class {refusal['class']} but"
        f" {refusal['organisation']} has {refusal['remaining']} left of {refusal['limit']} for"
        f" {refusal['period']} (resets {refusal['resets_at']})"
    )


async def anchor_of(conn: asyncpg.Connection, org_id: int) -> date | None:
    """The agreement start date an organisation's periods run from (None: calendar years)."""
    value = await conn.fetchval(
        "SELECT quota_period_from FROM csdr.organisations WHERE id = $1", org_id
    )
    return value if isinstance(value, date) else None


async def classes_of(conn: asyncpg.Connection, collections: set[str]) -> dict[str, str]:
    """The quota class of each collection."""
    rows = await conn.fetch(
        "SELECT collection, class FROM csdr.quota_classes WHERE collection = ANY($1::text[])",
        sorted(collections),
    )
    found = {r["collection"]: r["class"] for r in rows}
    return {c: found.get(c, DEFAULT_CLASS) for c in collections}


async def lock(
    conn: asyncpg.Connection, org_id: int, quota_class: str, period: date, default: int
) -> tuple[int, int, int]:
    """Lock the counter of (organisation, class, period) for this transaction (creating it;
    csdr.lock_quota, migration 0044); (used, reserved, limit)."""
    row = await conn.fetchrow(
        "SELECT used, reserved, scenes FROM csdr.lock_quota($1, $2, $3, $4)",
        org_id,
        quota_class,
        period,
        default,
    )
    assert row is not None
    return int(row["used"]), int(row["reserved"]), int(row["scenes"])


async def change(
    conn: asyncpg.Connection,
    org_id: int,
    quota_class: str,
    period: date,
    reserved: int = 0,
    committed: int = 0,
) -> None:
    """Add to the counters (a reservation, its commit, its refund)."""
    await conn.execute(
        "UPDATE csdr.quota_usage SET reserved = reserved + $4, committed = committed + $5"
        " WHERE org_id = $1 AND class = $2 AND period_start = $3",
        org_id,
        quota_class,
        period,
        reserved,
        committed,
    )


async def snapshot(
    conn: asyncpg.Connection, org_id: int, at: datetime, default: int
) -> list[Quota]:
    """Every class the organisation has a limit or usage in (at least `all`), for the period
    holding the moment `at`."""
    anchor = await anchor_of(conn, org_id)
    return await snapshot_of(conn, org_id, period_start(at, anchor), anchor, default)


async def snapshot_of(
    conn: asyncpg.Connection, org_id: int, period: date, anchor: date | None, default: int
) -> list[Quota]:
    """snapshot() for a known period (csdr.quota_snapshot, migration 0047)."""
    rows = await conn.fetch(
        "SELECT * FROM csdr.quota_snapshot($1, $2, $3, $4)", org_id, period, default, DEFAULT_CLASS
    )
    return [
        Quota(
            org_id,
            r["organisation"],
            r["class"],
            period,
            int(r["scenes"]),
            int(r["used"]),
            int(r["reserved"]),
            anchor,
        )
        for r in rows
    ]


async def snapshots(
    conn: asyncpg.Connection, anchors: Mapping[int, date | None], at: datetime, default: int
) -> list[Quota]:
    """snapshot() of several organisations in one query, given the agreement start date each
    one's periods run from (`anchors`, in the order the answer keeps)."""
    orgs = list(anchors)
    rows = await conn.fetch(
        "SELECT o.id, s.* FROM unnest($1::bigint[], $2::date[])"
        "  WITH ORDINALITY AS o (id, period, n)"
        " CROSS JOIN LATERAL csdr.quota_snapshot(o.id, o.period, $3, $4) WITH ORDINALITY"
        "  AS s (class, organisation, scenes, used, reserved, k)"
        " ORDER BY o.n, s.k",
        orgs,
        [period_start(at, anchors[org]) for org in orgs],
        default,
        DEFAULT_CLASS,
    )
    return [
        Quota(
            r["id"],
            r["organisation"],
            r["class"],
            period_start(at, anchors[r["id"]]),
            int(r["scenes"]),
            int(r["used"]),
            int(r["reserved"]),
            anchors[r["id"]],
        )
        for r in rows
    ]


def charges_downloads(principal: Principal) -> bool:
    """Whether this caller's full-resolution downloads count against a quota."""
    return (
        principal.org_id is not None
        and not principal.is_admin
        and MIRROR_SCOPE not in principal.scopes
    )


def full_resolution(asset: Mapping[str, Any]) -> bool:
    """Whether downloading this asset is receiving the scene (its role is `data`)."""
    roles = asset.get("roles")
    return isinstance(roles, list) and FULL_RESOLUTION in roles


@dataclass(frozen=True)
class Download:
    """The scene an organisation downloads (platform and instrument: for the statistics)."""

    org_id: int
    collection: str
    item_id: str
    platform: str | None
    instrument: str | None

    @classmethod
    def of(cls, org_id: int, item: Mapping[str, Any]) -> Download:
        """The download of a STAC item's scene."""
        props = item.get("properties") or {}
        instruments = props.get("instruments")
        instrument = instruments[0] if isinstance(instruments, list) and instruments else None
        platform = props.get("platform")
        return cls(
            org_id,
            str(item["collection"]),
            str(item["id"]),
            platform if isinstance(platform, str) else None,
            instrument if isinstance(instrument, str) else None,
        )


_CONTEXT_SQL = (
    "SELECT o.name, o.quota_period_from,"
    " coalesce((SELECT p.policy FROM csdr.collection_policies p WHERE p.collection = $2),"
    "  'public') <> 'public' AS governed,"
    " coalesce((SELECT c.class FROM csdr.quota_classes c WHERE c.collection = $2), $3) AS class"
    " FROM csdr.organisations o WHERE o.id = $1"
)
_KEY = "org_id = $1 AND period_start = $2 AND collection = $3 AND item_id = $4"


async def mark_downloaded(
    conn: asyncpg.Connection, d: Download, period: date, at: datetime
) -> str | None:
    """Mark a held scene downloaded: 'held' when it was downloaded before, 'first' when this is
    its first download (a ledger row), None when the organisation does not hold it."""
    row = await conn.fetchrow(
        f"WITH old AS (SELECT downloaded_at FROM csdr.entitlements WHERE {_KEY} FOR UPDATE)"
        " UPDATE csdr.entitlements e SET downloaded_at = coalesce(e.downloaded_at, $5) FROM old"
        f" WHERE {_KEY}"
        " RETURNING old.downloaded_at IS NULL AS first, e.order_id, e.class",
        d.org_id,
        period,
        d.collection,
        d.item_id,
        at,
    )
    if row is None:
        return None
    if row["first"]:
        entry = ledger.Entry(
            d.org_id,
            row["class"],
            period,
            d.collection,
            d.item_id,
            d.platform,
            d.instrument,
            row["order_id"],
        )
        await ledger.record(conn, at, "downloaded", [entry])
        return "first"
    return "held"


async def charge_download(conn: asyncpg.Connection, d: Download, at: datetime, default: int) -> str:
    """Judge an organisation's full-resolution download of a scene, in one transaction on the
    primary: 'held' (it held the scene and had downloaded it: nothing written), 'first' (it
    held it: its first download is recorded, free), 'free' (a collection no quota governs),
    'charged' (one scene of its quota, committed at once). OverQuota when the scene does not
    fit: nothing written."""
    context = await conn.fetchrow(_CONTEXT_SQL, d.org_id, d.collection, DEFAULT_CLASS)
    if context is None:
        return "free"
    anchor, quota_class = context["quota_period_from"], str(context["class"])
    period = period_start(at, anchor)
    held = await conn.fetchval(
        f"SELECT downloaded_at IS NOT NULL FROM csdr.entitlements WHERE {_KEY}",
        d.org_id,
        period,
        d.collection,
        d.item_id,
    )
    if held:
        return "held"  # the common case (repeats, byte ranges): one read, nothing written
    async with conn.transaction():
        if not context["governed"]:
            return await mark_downloaded(conn, d, period, at) or "free"
        used, reserved, limit = await lock(conn, d.org_id, quota_class, period, default)
        # Under the counter's lock: an order or download that got here first is seen now.
        if (first := await mark_downloaded(conn, d, period, at)) is not None:
            return first
        quota = Quota(d.org_id, context["name"], quota_class, period, limit, used, reserved, anchor)
        if (refusal := quota.refusal(1)) is not None:
            what = f"downloading {d.collection}/{d.item_id}"
            raise OverQuota(f"{refusal_text(refusal, what)}; nothing was charged", refusal)
        await conn.execute(
            "INSERT INTO csdr.entitlements (org_id, period_start, collection, item_id, class,"
            " state, order_id, downloaded_at) VALUES ($1, $2, $3, $4, $5, 'committed', NULL, $6)",
            d.org_id,
            period,
            d.collection,
            d.item_id,
            quota_class,
            at,
        )
        await change(conn, d.org_id, quota_class, period, committed=1)
        entry = ledger.Entry(
            d.org_id, quota_class, period, d.collection, d.item_id, d.platform, d.instrument, None
        )
        await ledger.record(conn, at, "downloaded", [entry])
        return "charged"
