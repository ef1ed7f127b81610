"""`csdr-admin`: organisations and their areas, keys, policies, peers, quotas and backups, by
script or hand.

Connects with the libpq PG* variables. Exit status 0 on success, 1 when the request was refused
(the message says why), 2 for usage errors or an unreachable database, 3 when a restore finished
but asset files of the backup are missing or differ (listed on stdout). `key issue` prints the new
key alone on the last line of stdout, so `KEY=$(csdr-admin key issue ... | tail -n1)` works.
"""

import argparse
import getpass
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import psycopg

from csdr_access import admin, areas, backup, peers, quotas
from csdr_access.policies import Policy


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Rows as aligned text columns."""
    cells = [
        [
            ("" if r[c] is None else ",".join(r[c]) if isinstance(r[c], list) else str(r[c]))
            for c in columns
        ]
        for r in rows
    ]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


AREA_COLUMNS = ["org", "country", "area", "label", "km2", "bbox"]


def parser() -> argparse.ArgumentParser:
    """The command line grammar."""
    p = argparse.ArgumentParser(prog="csdr-admin", description=__doc__.splitlines()[0])
    groups = p.add_subparsers(dest="group", required=True)

    org = groups.add_parser("org", help="organisations").add_subparsers(dest="verb", required=True)
    add = org.add_parser("add", help="register an organisation")
    add.add_argument("name")
    add.add_argument("--country", required=True, help="ISO 3166 alpha-2, e.g. CN, TH, KE")
    add.add_argument("--kind", required=True, choices=admin.ORG_KINDS)
    org.add_parser("list", help="list organisations")
    areas.add_parsers(org)

    key = groups.add_parser("key", help="API keys").add_subparsers(dest="verb", required=True)
    issue = key.add_parser("issue", help="issue a key (printed once, on the last line)")
    issue.add_argument("--org", required=True)
    issue.add_argument("--scope", action="append", required=True, choices=admin.SCOPES)
    issue.add_argument("--expires", type=date.fromisoformat, help="last valid day, YYYY-MM-DD")
    issue.add_argument("--label")
    revoke = key.add_parser("revoke", help="revoke a key by its prefix")
    revoke.add_argument("prefix")
    keys = key.add_parser("list", help="list keys (prefixes only)")
    keys.add_argument("--org")

    policy = groups.add_parser("policy", help="collection policies").add_subparsers(
        dest="verb", required=True
    )
    set_ = policy.add_parser("set", help="set who may see a collection")
    set_.add_argument("collection")
    set_.add_argument("policy", choices=[str(p) for p in Policy])
    set_.add_argument("--org", action="append", default=[], help="a partner (repeatable)")
    policy.add_parser("list", help="list collections with their policies")
    peers.add_parsers(groups)
    quotas.add_parsers(groups)

    save = groups.add_parser("backup", help="back up the database and list the asset files")
    save.add_argument("dir", type=Path, help="a new or empty folder")
    save.add_argument(
        "--no-checksums", action="store_true", help="do not hash files that lack file:checksum"
    )
    load = groups.add_parser("restore", help="restore a backup onto an empty database")
    load.add_argument("dir", type=Path, help="a folder written by csdr-admin backup")
    load.add_argument(
        "--checksums", action="store_true", help="also compare every asset file's checksum"
    )
    return p


def run(args: argparse.Namespace, conn: psycopg.Connection) -> str:
    """Carry out one command; return what to print."""
    actor = f"cli:{getpass.getuser()}"
    match args.group, getattr(args, "verb", None):
        case "org", "add":
            admin.add_org(conn, args.name, args.country, args.kind, actor)
            return f"added organisation {args.name}"
        case "org", "list":
            return _table(admin.list_orgs(conn), ["name", "country", "kind", "created_at"])
        case "org", "area":
            return _table([areas.run(args, conn, actor)], AREA_COLUMNS)
        case "key", "issue":
            key, prefix = admin.issue_key(
                conn, args.org, args.scope, actor, args.expires, args.label
            )
            return (
                f"issued key {prefix} for {args.org} (scopes {','.join(args.scope)});"
                f" it is shown only now:\n{key}"
            )
        case "key", "revoke":
            admin.revoke_key(conn, args.prefix, actor)
            return f"revoked key {args.prefix}"
        case "key", "list":
            return _table(
                admin.list_keys(conn, args.org),
                ["prefix", "org", "scopes", "label", "expires_at", "revoked_at", "last_used_at"],
            )
        case "policy", "set":
            admin.set_policy(conn, args.collection, args.policy, args.org, actor)
            return f"{args.collection} is now {args.policy}"
        case "policy", "list":
            return _table(admin.list_policies(conn), ["collection", "policy", "orgs"])
        case "peer", "list":
            columns = ["name", "url", "status", "node", "collections", "assets", "cursor"]
            progress = ["lag_events", "applied", "refused", "last_error"]
            return _table(peers.list_peers(conn), [*columns, *progress])
        case "peer", _:
            return peers.run(args, conn, actor)
        case "backup", None:
            return backup.backup(conn, args.dir, checksums=not args.no_checksums)
        case "restore", None:
            return backup.restore(conn, args.dir, checksums=args.checksums)
        case "quota", _:
            done = quotas.run(args, conn, actor)
            if isinstance(done, str):
                return done
            columns = ["org", "class", "period", "limit", "used", "reserved", "remaining"]
            return _table(done, columns)
    raise AssertionError(f"unhandled command {args.group} {args.verb}")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = parser().parse_args(argv)
    try:
        conn = psycopg.connect(autocommit=True)
    except psycopg.OperationalError as exc:
        print(f"csdr-admin: cannot reach the database: {exc}", file=sys.stderr)
        return 2
    with conn:
        try:
            print(run(args, conn))
        except backup.IncompleteRestore as exc:
            print(exc)
            return 3
        except admin.AdminError as exc:
            print(f"csdr-admin: {exc}", file=sys.stderr)
            return 1
        except psycopg.Error as exc:
            print(f"csdr-admin: the database refused: {exc}".strip(), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
