"""Production of offline scenes: an order of an offline scene queues one production per scene,
however many organisations order it, as an ingest job on ingest's durable queue (csdr.ingest_jobs,
option `production`): the ingest workers unpack the archived package, orthorectify it with its
RPCs and publish COGs under the same item id, so the scene is online for good. One job is active
per package (the unique index of migration 0020): it produces every scene of the package, and a
scene of a package whose job is queued or running joins it (migration 0048)."""

from __future__ import annotations

import asyncpg

from csdr_orders.scenes import Scene


async def request(conn: asyncpg.Connection, scenes: list[Scene]) -> int:
    """Queue the production of each offline scene not already queued (csdr.request_production,
    migration 0048: as csdr_ingest.jobs.enqueue writes a job, in the caller's transaction); how
    many were queued. Scenes are taken in one order (collection, id): a production's row stays
    locked until the caller commits, so two orders naming the same scenes never wait for each
    other in a cycle."""
    queued = 0
    for scene in sorted(scenes, key=lambda s: (s.collection, s.item_id)):
        job = await conn.fetchval(
            "SELECT csdr.request_production($1, $2)", scene.collection, scene.item_id
        )
        queued += job is not None
    return queued


async def finished(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """Claim (FOR UPDATE SKIP LOCKED) up to `limit` queued productions whose job has ended, and
    mark them with the job's outcome; each with `ok` and the job's error description."""
    return await conn.fetch(
        "WITH done AS ("
        "  SELECT p.collection, p.item_id, j.status = 'succeeded' AS ok,"
        "   coalesce(j.error->>'description', j.error->>'code') AS error"
        "  FROM csdr.productions p JOIN csdr.ingest_jobs j ON j.id = p.job_id"
        "  WHERE p.status = 'queued' AND j.status IN ('succeeded', 'failed')"
        "  ORDER BY p.created_at LIMIT $1 FOR UPDATE OF p SKIP LOCKED)"
        " UPDATE csdr.productions p SET"
        "  status = CASE WHEN done.ok THEN 'succeeded' ELSE 'failed' END,"
        "  error = done.error, finished_at = now()"
        " FROM done WHERE p.collection = done.collection AND p.item_id = done.item_id"
        " RETURNING p.collection, p.item_id, done.ok, done.error",
        limit,
    )
