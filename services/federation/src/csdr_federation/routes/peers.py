"""`GET /federation/peers`: the peers this node mirrors and how far along each is (admin scope);
`POST /federation/peers/{name}/wake`: a doorbell (e.g. the peer's push webhook) that makes the
worker ask that peer at once instead of at its next poll."""

from typing import Any

from fastapi import APIRouter, Request, Response

from csdr_federation.access import AdminDep
from csdr_federation.errors import FederationError
from csdr_service.pools import PoolDep

router = APIRouter(prefix="/federation/peers", tags=["Federation"])

STATUS_SQL = """
SELECT name, url, status, node, collections, bbox, max_cloud, since, assets, cursor, at_head,
       lag_events, push_url, wake_subscription::text, applied, refused, last_page_at, last_error,
       last_error_at,
       extract(epoch FROM now() - last_page_at) AS since_last_page_s,
       (SELECT coalesce(jsonb_object_agg(s.status, s.n), '{}'::jsonb)
        FROM (SELECT a.status, count(*) AS n FROM csdr.federation_assets a
              WHERE a.peer = p.name GROUP BY a.status) s) AS asset_copies
FROM csdr.federation_peers p ORDER BY name
"""


class PeerNotFound(FederationError):
    """No peer registered under that name."""

    code = "NotFound"
    status = 404


@router.get("", summary="The peers this node mirrors, with their progress")
async def list_peers(pool: PoolDep, principal: AdminDep) -> dict[str, Any]:
    """Each peer's settings (never its key), cursor, whether it is at its head and how many
    events behind, changes applied and refused, its last error, its wake-up subscription at the
    peer's push service, and its asset copies by status (`copy` and `lazy` peers)."""
    rows = await pool.fetch(STATUS_SQL)
    return {
        "peers": [
            {
                **{k: v for k, v in dict(r).items() if k not in ("since", "last_page_at")},
                "since": r["since"].isoformat() if r["since"] else None,
                "last_page_at": r["last_page_at"].isoformat() if r["last_page_at"] else None,
                "last_error_at": r["last_error_at"].isoformat() if r["last_error_at"] else None,
                "since_last_page_s": float(r["since_last_page_s"])
                if r["since_last_page_s"] is not None
                else None,
            }
            for r in rows
        ]
    }


@router.post("/{name}/wake", status_code=202, summary="Ask a peer for its changes now")
async def wake(name: str, request: Request, pool: PoolDep) -> Response:
    """Make the worker ask the peer at once (no key needed: it only moves the next poll
    earlier, and the worker asks one peer at a time)."""
    if await pool.fetchval("SELECT 1 FROM csdr.federation_peers WHERE name = $1", name) is None:
        raise PeerNotFound(f"no peer named {name!r} on this node")
    worker = request.app.state.worker
    if worker is not None:
        worker.wake(name)
    return Response(status_code=202)
