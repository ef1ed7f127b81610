"""The services' asyncpg pool: what a connection keeps when it goes back to the pool."""

import asyncio

import pytest

from csdr_service import pools


async def _after_release(reset_session: bool) -> tuple[str, bool]:
    """A setting made and a transaction left open on a connection, then released: the setting
    the next checkout sees, and whether it is in a transaction."""
    pool = await pools.open_pool(1, "test", reset_session=reset_session)
    try:
        async with pool.acquire() as conn:
            await conn.execute("SET application_name = 'changed'")
            await conn.execute("BEGIN")
            await conn.execute("CREATE TEMP TABLE left_open (n int)")
        async with pool.acquire() as conn:
            name = await conn.fetchval("SHOW application_name")
            return str(name), conn.is_in_transaction()
    finally:
        await pool.close()


@pytest.mark.parametrize(("reset_session", "name"), [(True, "test"), (False, "changed")])
def test_a_released_connection_is_rolled_back_and_reset_only_when_asked(
    pg_env: dict[str, str], reset_session: bool, name: str
) -> None:
    assert asyncio.run(_after_release(reset_session)) == (name, False)
