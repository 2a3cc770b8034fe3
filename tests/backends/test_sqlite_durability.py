"""SQLite: submits and cancels are fsynced (synchronous=FULL); a worker's own writes are not."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from offload.backends.sqlite import SQLiteBackend
from offload.backends.sqlite.threads import SQLiteThread
from offload.core.ids import new_job_id
from offload.core.job import Lease, NewJob

LEVELS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def level(conn: sqlite3.Connection) -> str:
    return LEVELS[conn.execute("PRAGMA synchronous").fetchone()[0]]


def job() -> NewJob:
    return NewJob(id=new_job_id(), task="t", args=[], kwargs={})


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(operation, synchronous level of the writer's transaction) for each backend write."""
    from offload.backends.sqlite import tx

    log: list[tuple[str, str]] = []
    for name in ("submit", "claim", "move", "cancel", "reap", "renew"):
        original = getattr(tx, name)

        def spy(
            conn: sqlite3.Connection,
            *args: object,
            _name: str = name,
            _original: object = original,
            **kwargs: object,
        ) -> object:
            log.append((_name, level(conn)))
            return _original(conn, *args, **kwargs)  # type: ignore[operator]

        monkeypatch.setattr(tx, name, spy)
    return log


async def test_submits_and_cancels_are_fsynced_and_worker_writes_are_not(
    tmp_path: Path, seen: list[tuple[str, str]]
) -> None:
    backend = SQLiteBackend(str(tmp_path / "d.db"))
    await backend.open()
    try:
        one, two = job(), job()
        await backend.submit([one, two])
        [claimed] = await backend.claim("w", {"default": 1}, 1, 30.0)
        lease = Lease(claimed.id, claimed.token)
        await backend.renew("w", [lease], 30.0)
        await backend.complete(lease, "ok")
        await backend.cancel(two.id if claimed.id == one.id else one.id)
        await backend.reap()
    finally:
        await backend.close()
    assert seen == [
        ("submit", "FULL"),
        ("claim", "NORMAL"),
        ("renew", "NORMAL"),
        ("move", "NORMAL"),
        ("cancel", "FULL"),
        ("reap", "NORMAL"),
    ]


async def test_a_batch_with_one_durable_operation_is_fsynced(tmp_path: Path) -> None:
    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(tmp_path / "d.db", isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn

    writer = SQLiteThread("w", connect, transactional=True, durable="FULL", relaxed="NORMAL")
    writer.start()
    try:
        assert await writer.run(level, durable=False) == "NORMAL"
        assert await writer.run(level) == "FULL"
        assert await writer.run(level, durable=False) == "NORMAL"
    finally:
        writer.stop()


async def test_a_url_asking_for_normal_keeps_every_write_at_normal(
    tmp_path: Path, seen: list[tuple[str, str]]
) -> None:
    backend = SQLiteBackend.from_url(f"sqlite:///{tmp_path / 'd.db'}?synchronous=normal")
    await backend.open()
    try:
        await backend.submit([job()])
        await backend.claim("w", {"default": 1}, 1, 30.0)
    finally:
        await backend.close()
    assert seen == [("submit", "NORMAL"), ("claim", "NORMAL")]
