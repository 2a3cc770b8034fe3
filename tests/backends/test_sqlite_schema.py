"""The SQLite schema: a database made by an older offload is upgraded in place on open."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from offload.backends.sqlite import SQLiteBackend, schema
from offload.core.clock import ManualClock
from offload.core.job import Lease, NewJob
from offload.errors import ConfigurationError

#: The columns schema 2 added to the jobs table.
NEW_COLUMNS = (
    "expires_at",
    "result_ttl",
    "capped",
    "cap",
    "key_cap",
    "rate",
    "key_rate",
    "reserved",
)


async def test_a_version_1_database_is_upgraded_and_keeps_its_jobs(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    clock = ManualClock()
    first = SQLiteBackend(str(path), clock=clock)
    await first.open()
    [old] = await first.submit([NewJob("a" * 32, "t", [1], {})])
    await first.close()
    # Turn it into what offload 0.1 (schema 1) left on disk: no retention columns.
    conn = sqlite3.connect(path)
    conn.executescript(
        "DROP INDEX jobs_expiry; DROP INDEX jobs_capped; DROP INDEX jobs_slots; "
        "DROP INDEX jobs_outcome; DROP INDEX jobs_ready; DROP TABLE buckets; "
        + "".join(f"ALTER TABLE jobs DROP COLUMN {column}; " for column in NEW_COLUMNS)
        + "CREATE INDEX jobs_ready ON jobs (queue, priority DESC, run_at, id) "
        "WHERE status = 'queued' AND losses = 0; "
        "UPDATE offload_meta SET value = '1' WHERE key = 'schema';"
    )
    conn.close()

    upgraded = SQLiteBackend(str(path), clock=clock)
    await upgraded.open()
    try:
        assert await upgraded.get(old.id) == old
        [new] = await upgraded.submit([NewJob("b" * 32, "t", [2], {}, queue="q", result_ttl=1)])
        [claimed] = await upgraded.claim("w", {"q": 1}, 1, 30)
        assert claimed.id == new.id
        await upgraded.complete(Lease(claimed.id, claimed.token), None)
        clock.advance(2)
        assert await upgraded.prune() == 1
        assert await upgraded.get(new.id) is None
        assert await upgraded.get(old.id) == old
    finally:
        await upgraded.close()
    conn = sqlite3.connect(path)
    version = conn.execute("SELECT value FROM offload_meta WHERE key = 'schema'").fetchone()[0]
    conn.close()
    assert int(version) == schema.SCHEMA_VERSION


async def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    backend = SQLiteBackend(str(path))
    await backend.open()
    await backend.close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE offload_meta SET value = '99' WHERE key = 'schema'")
    conn.commit()
    conn.close()
    with pytest.raises(ConfigurationError, match="newer than this offload"):
        await SQLiteBackend(str(path)).open()


async def test_opening_a_current_database_writes_nothing_so_a_held_lock_does_not_fail_it(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "jobs.db")
    first = SQLiteBackend(path)
    await first.open()
    await first.close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process is inside a long write
    try:
        late = SQLiteBackend(path, busy_timeout=0.2)
        await late.open()  # before: ConfigurationError "database is locked" after 0.2 s
        assert await late.get("none") is None
        await late.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


async def test_creating_the_schema_waits_for_the_write_lock_like_other_writers(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "jobs.db")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("CREATE TABLE other (x)")
    holder.execute("BEGIN IMMEDIATE")
    backend = SQLiteBackend(path, busy_timeout=0.2)
    opening = asyncio.create_task(backend.open())
    await asyncio.sleep(0.6)  # longer than the busy timeout
    holder.execute("ROLLBACK")
    holder.close()
    await asyncio.wait_for(opening, 20.0)
    await backend.close()
    check = sqlite3.connect(path)
    assert schema.stored_version(check) == schema.SCHEMA_VERSION
    check.close()
