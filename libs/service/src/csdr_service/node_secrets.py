"""Secrets a node makes for itself when the operator configured none: kept in the database
(csdr.node_secrets, migration 0029) so that every process of a service, and the next start,
uses the same one."""

import secrets

import asyncpg

MAKE_SQL = (
    "INSERT INTO csdr.node_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING"
)


async def node_secret(pool: asyncpg.Pool, name: str) -> str:
    """The node's secret `name` (32 random bytes as hex), made on first use."""
    await pool.execute(MAKE_SQL, name, secrets.token_hex(32))
    value = await pool.fetchval("SELECT value FROM csdr.node_secrets WHERE name = $1", name)
    return str(value)
