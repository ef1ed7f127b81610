"""The files of a version a re-ingest replaced: scheduled for deletion in the publish's
transaction and deleted `replaced_grace_s` later, so a tile or download that read the old item
just before the publish can still open them (services answer within their request limit)."""

from collections.abc import Iterable

import psycopg

from csdr_storage.store import AssetStore, in_item_folder

# Due rows are taken a batch at a time, locked so two ingest processes never take the same.
DUE_SQL = """
    SELECT href, collection, item_id FROM csdr.replaced_files
    WHERE due_at <= now() ORDER BY due_at LIMIT 500 FOR UPDATE SKIP LOCKED
"""


def schedule(
    conn: psycopg.Connection,
    collection: str,
    item_id: str,
    hrefs: Iterable[str],
    grace_s: float,
) -> None:
    """Record, in the caller's transaction, that `hrefs` go `grace_s` seconds from now."""
    conn.cursor().executemany(
        "INSERT INTO csdr.replaced_files (href, collection, item_id, due_at)"
        " VALUES (%s, %s, %s, now() + make_interval(secs => %s))"
        " ON CONFLICT (href) DO NOTHING",
        [(href, collection, item_id, grace_s) for href in hrefs],
    )


def delete_due(conn: psycopg.Connection, store: AssetStore) -> int:
    """Delete the files whose time came (only those in their item's folder of `store`) and
    their rows; return how many. A failed delete rolls back: the next round tries again."""
    with conn.transaction():
        rows = conn.execute(DUE_SQL).fetchall()
        keys = [
            key
            for href, collection, item_id in rows
            if (key := store.key_of(href)) is not None and in_item_folder(key, collection, item_id)
        ]
        store.delete(keys)
        conn.execute(
            "DELETE FROM csdr.replaced_files WHERE href = ANY(%s)", ([r[0] for r in rows],)
        )
    return len(rows)
