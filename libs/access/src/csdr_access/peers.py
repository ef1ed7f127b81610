"""`csdr-admin peer ...`: the upstream nodes this node mirrors (csdr.federation_peers, migration
0017), read by the federation service's sync worker. Every change is written to the audit log
(the peer's key never: it is the key the peer issued to this node, kept only in its row).
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import UTC, date, datetime, time
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from csdr_access.admin import AdminError, audit

ASSET_MODES = ("copy", "proxy", "lazy")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def bbox_of(text: str) -> list[float]:
    """A peer selection's `west,south,east,north`; ValueError saying what is wrong (the admin
    command and the federation feed read the selection by this one rule)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"{text!r} is not four numbers west,south,east,north") from None
    if len(values) != 4 or not all(-180 <= v <= 180 for v in (values[0], values[2])):
        raise ValueError(f"{text!r} is not four numbers west,south,east,north")
    if not -90 <= values[1] <= values[3] <= 90:
        raise ValueError(f"south and north of {text!r} are not latitudes, south first")
    return values


def geometry_of(text: str) -> dict[str, Any]:
    """A peer selection's GeoJSON geometry; ValueError saying what is wrong."""
    try:
        geometry = json.loads(text)
    except ValueError:
        raise ValueError("not JSON; give a GeoJSON geometry") from None
    if not isinstance(geometry, dict) or "type" not in geometry or "coordinates" not in geometry:
        raise ValueError("not a GeoJSON geometry (type and coordinates)")
    return geometry


def _option(parse: Any, option: str, text: str) -> Any:
    try:
        return parse(text)
    except ValueError as exc:
        raise AdminError(f"{option}: {exc}") from None


def add_peer(
    conn: psycopg.Connection,
    name: str,
    url: str,
    key: str,
    actor: str,
    collections: list[str] | None = None,
    bbox: str | None = None,
    intersects: str | None = None,
    max_cloud: float | None = None,
    since: date | None = None,
    assets: str = "proxy",
    push_url: str | None = None,
) -> None:
    """Register an upstream node to mirror from the start of its feed."""
    if not NAME_PATTERN.match(name):
        raise AdminError(f"peer name {name!r}: lower-case letters, digits, . _ - (at most 63)")
    if not re.match(r"^https?://[^/\s]+", url):
        raise AdminError(f"URL {url!r} is not an http(s) URL of the peer's federation service")
    if not key:
        raise AdminError("--key: the API key the peer issued to this node is needed")
    if bbox is not None and intersects is not None:
        raise AdminError("give --bbox or --intersects, not both")
    if max_cloud is not None and not 0 <= max_cloud <= 100:
        raise AdminError(f"--max-cloud {max_cloud} is not a percentage (0-100)")
    if assets not in ASSET_MODES:
        raise AdminError(f"--assets must be one of {', '.join(ASSET_MODES)}, not {assets!r}")
    if push_url is not None and not re.match(r"^https?://[^/\s]+", push_url):
        raise AdminError(f"--push {push_url!r} is not an http(s) URL of the peer's push service")
    since_at = datetime.combine(since, time.min, UTC) if since else None
    with conn.transaction():
        try:
            conn.execute(
                "INSERT INTO csdr.federation_peers (name, url, api_key, collections, bbox,"
                " intersects, max_cloud, since, assets, push_url)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    name,
                    url.rstrip("/"),
                    key,
                    collections or None,
                    _option(bbox_of, "--bbox", bbox) if bbox else None,
                    Jsonb(_option(geometry_of, "--intersects", intersects)) if intersects else None,
                    max_cloud,
                    since_at,
                    assets,
                    push_url.rstrip("/") if push_url else None,
                ),
            )
        except psycopg.errors.UniqueViolation as exc:
            raise AdminError(f"a peer named {name!r} exists already") from exc
        audit(
            conn,
            actor,
            "peer.add",
            {"name": name, "url": url, "collections": collections, "assets": assets},
        )


def list_peers(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every peer with its selection and progress (never its key)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT name, url, status, node, collections, bbox::text[] AS bbox, max_cloud, since,"
            " assets, cursor, at_head, lag_events, applied, refused, last_error"
            " FROM csdr.federation_peers ORDER BY name"
        ).fetchall()


def set_status(conn: psycopg.Connection, name: str, status: str, actor: str) -> None:
    """Pause or resume mirroring a peer (its cursor stays)."""
    with conn.transaction():
        cur = conn.execute(
            "UPDATE csdr.federation_peers SET status = %s, updated_at = now() WHERE name = %s",
            (status, name),
        )
        if cur.rowcount == 0:
            raise AdminError(f"no peer named {name!r} (see `csdr-admin peer list`)")
        audit(conn, actor, f"peer.{'pause' if status == 'paused' else 'resume'}", {"name": name})


def remove_peer(conn: psycopg.Connection, name: str, actor: str) -> None:
    """Stop mirroring a peer and forget its checkpoint (what was mirrored stays)."""
    with conn.transaction():
        cur = conn.execute("DELETE FROM csdr.federation_peers WHERE name = %s", (name,))
        if cur.rowcount == 0:
            raise AdminError(f"no peer named {name!r} (see `csdr-admin peer list`)")
        audit(conn, actor, "peer.remove", {"name": name})


def add_parsers(groups: Any) -> None:
    """The `peer` command group of csdr-admin."""
    peer = groups.add_parser("peer", help="nodes this node mirrors").add_subparsers(
        dest="verb", required=True
    )
    add = peer.add_parser("add", help="mirror an upstream node")
    add.add_argument("name", help="a short name for the peer, e.g. main or la")
    add.add_argument("url", help="the peer's federation service, e.g. https://node.example:8087")
    add.add_argument("--key", required=True, help="the API key the peer issued to this node")
    add.add_argument(
        "--collections", type=lambda s: [c for c in s.split(",") if c], help="a,b (default all)"
    )
    add.add_argument("--bbox", help="west,south,east,north")
    add.add_argument("--intersects", help="a GeoJSON geometry")
    add.add_argument("--max-cloud", type=float, help="highest eo:cloud_cover, 0-100")
    add.add_argument("--since", type=date.fromisoformat, help="items acquired from YYYY-MM-DD")
    add.add_argument(
        "--assets",
        choices=ASSET_MODES,
        default="proxy",
        help="proxy (default): scenes stay at the peer, read through its download route; copy:"
        " every scene is copied here; lazy: read at the peer until a scene's first tile or"
        " download here, then copied",
    )
    add.add_argument(
        "--push",
        metavar="URL",
        help="the peer's push service: its webhooks wake the worker (else it only polls)",
    )
    peer.add_parser("list", help="list peers and their progress")
    for verb, text in (("pause", "pause"), ("resume", "resume"), ("remove", "stop mirroring")):
        peer.add_parser(verb, help=f"{text} a peer").add_argument("name")


def run(args: argparse.Namespace, conn: psycopg.Connection, actor: str) -> str:
    """Carry out one `peer` command; return what to print."""
    match args.verb:
        case "add":
            add_peer(
                conn,
                args.name,
                args.url,
                args.key,
                actor,
                args.collections,
                args.bbox,
                args.intersects,
                args.max_cloud,
                args.since,
                args.assets,
                args.push,
            )
            return f"added peer {args.name} ({args.url}); the federation worker starts mirroring it"
        case "pause" | "resume":
            set_status(conn, args.name, "paused" if args.verb == "pause" else "active", actor)
            return f"peer {args.name} {'paused' if args.verb == 'pause' else 'resumed'}"
        case "remove":
            remove_peer(conn, args.name, actor)
            return f"removed peer {args.name}"
    raise AssertionError(f"unhandled command peer {args.verb}")
