"""The queued job a publish is made for, and what its transaction records about it.

A worker runs a claimed job's pipeline inside `publishing_for(job)`; every item the pipeline
publishes meanwhile (csdr_ingest.pipeline.publish) is recorded on the job's row in the item's own
transaction, and only while the worker still holds the job's attempt. So a worker that lost its
lease publishes nothing, and a job run again after its worker died between publishing an item and
recording the outcome does not publish that item a second time (a second version, an `updated`
event for every subscriber): its earlier attempt's items are already on the row. Outside a job
(the CLI) nothing is recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

_JOB: ContextVar[dict[str, Any] | None] = ContextVar("csdr_ingest_claimed_job", default=None)


class LeaseLost(Exception):
    """The job's attempt is no longer this worker's: another runs it, and publishes for it."""


@contextmanager
def publishing_for(job: dict[str, Any]) -> Iterator[None]:
    """Record the items published in this context on `job` (a claimed job: id, attempt,
    worker)."""
    token = _JOB.set(job)
    try:
        yield
    finally:
        _JOB.reset(token)


def record(conn: psycopg.Connection, collection: str, item_id: str) -> bool:
    """Inside the publish's transaction: note the item on the claimed job's row; False when an
    earlier attempt of the job published it already (leave it as it is). LeaseLost when the
    worker no longer holds the attempt. True outside a job."""
    job = _JOB.get()
    if job is None:
        return True
    row = conn.execute(
        "SELECT items FROM csdr.ingest_jobs"
        " WHERE id = %s AND attempts = %s AND worker = %s AND status = 'running' FOR UPDATE",
        (job["id"], job["attempt"], job["worker"]),
    ).fetchone()
    if row is None:
        raise LeaseLost(
            f"job {job['id']}: attempt {job['attempt']} lost its lease; {collection}/{item_id}"
            " is left to the attempt that holds it"
        )
    published = {(i["collection"], i["id"]) for i in row[0]}
    if (collection, item_id) in published:
        return False
    conn.execute(
        "UPDATE csdr.ingest_jobs SET items = items || %s WHERE id = %s",
        (Jsonb([{"id": item_id, "collection": collection}]), job["id"]),
    )
    return True
