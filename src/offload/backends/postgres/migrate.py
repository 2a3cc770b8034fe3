"""Applying the schema's migrations at start: once, whoever starts first.

See :mod:`.schema` for the scripts; :func:`migrate` runs the missing ones.
"""

from __future__ import annotations

from typing import Any

import psycopg

from offload.backends.postgres import schema


async def migrate(conn: psycopg.AsyncConnection[Any], schema_name: str) -> int:
    """Bring the schema to :data:`schema.SCHEMA_VERSION`; returns the version found. Processes
    starting together take turns on an advisory lock; the later ones find the work done."""
    found = await stored_version(conn, schema_name)
    if found == schema.SCHEMA_VERSION:
        return found
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            (schema.lock_key(schema_name),),
        )
        found = await stored_version(conn, schema_name)  # again, now that we hold the lock
        schema.check_version(found)
        if found < schema.SCHEMA_VERSION:
            for statement in schema.migration_steps(schema_name, found):
                await conn.execute(statement)
    return found


async def stored_version(conn: psycopg.AsyncConnection[Any], schema_name: str) -> int:
    try:
        async with conn.transaction():  # a savepoint inside a transaction: may fail harmlessly
            cur = await conn.execute(schema.version_sql(schema_name))
            row = await cur.fetchone()
    except psycopg.errors.UndefinedTable:
        return 0
    except psycopg.errors.InvalidSchemaName:
        return 0
    return int(row[0]) if row and row[0] is not None else 0
