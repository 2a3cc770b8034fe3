"""What a process frozen inside a write transaction does to a SQLite file (issue 23 item 14,
documented in docs/reliability.md): every other writer waits for the lock up to
``lock_timeout``, then fails with BackendUnavailable (never a silent success), and works again
as soon as the frozen process is killed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from offload.backends.sqlite import SQLiteBackend
from offload.core.ids import new_job_id
from offload.core.job import NewJob
from offload.errors import BackendUnavailable

HOLD = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("UPDATE offload_meta SET value = value WHERE key = 'schema'")
print("locked", flush=True)
time.sleep(600)
"""


def job() -> NewJob:
    return NewJob(id=new_job_id(), task="tasks.echo", args=[], kwargs={})


async def test_a_frozen_writer_makes_submits_fail_after_the_lock_timeout_then_recover(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "jobs.db")
    backend = SQLiteBackend(path, lock_timeout=0.5)
    await backend.open()
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLD, path, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        assert (await holder.stdout.readline()).strip() == b"locked"
        os.kill(holder.pid, signal.SIGSTOP)  # frozen inside its transaction
        refused = job()
        with pytest.raises(BackendUnavailable, match="locked"):
            await asyncio.wait_for(backend.submit([refused]), 20.0)
    finally:
        holder.kill()  # SIGKILL works on a stopped process; the OS drops its lock
        await holder.wait()
    saved = job()
    await asyncio.wait_for(backend.submit([saved]), 20.0)
    assert await backend.get(saved.id) is not None
    assert await backend.get(refused.id) is None
    await backend.close()
