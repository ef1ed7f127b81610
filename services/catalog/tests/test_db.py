"""The read pool's session settings (db.py): searches leave nothing behind in pgSTAC's search
cache and run without parallel workers, while numberMatched still caches its counts."""

from __future__ import annotations

import psycopg
from fastapi.testclient import TestClient

from tests.e2e import catalog_scenes


def _rows(env: dict[str, str], sql: str) -> int:
    with psycopg.connect(catalog_scenes.conninfo(env)) as conn:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return int(row[0])


def test_read_sessions_carry_the_search_settings(loaded_client: TestClient) -> None:
    async def settings() -> list[str]:
        async with loaded_client.app.state.readpool.acquire() as conn:  # type: ignore[attr-defined]
            return [
                await conn.fetchval("SHOW max_parallel_workers_per_gather"),
                await conn.fetchval("SELECT pgstac.readonly()::text"),
            ]

    assert loaded_client.portal.call(settings) == ["0", "true"]  # type: ignore[union-attr]


def test_searches_are_not_recorded_but_counts_are_cached(
    loaded_client: TestClient, loaded_db: dict[str, str]
) -> None:
    before = _rows(loaded_db, "SELECT count(*) FROM pgstac.searches")
    body = {"filter": {"op": ">=", "args": [{"property": "eo:cloud_cover"}, 0]}, "limit": 2}
    found = loaded_client.post("/search", json=body)
    assert found.status_code == 200 and found.json()["features"]
    assert _rows(loaded_db, "SELECT count(*) FROM pgstac.searches") == before

    counted = loaded_client.post("/search", json={**body, "count": True}).json()
    assert counted["numberMatched"] >= len(counted["features"]) > 0
    cached = "SELECT count(*) FROM pgstac.search_wheres WHERE total_count IS NOT NULL"
    assert _rows(loaded_db, cached) >= 1
