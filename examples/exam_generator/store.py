"""Which workflow builds which exam (SQLite), so that a repeated request finds the first one."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, timeout=10)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def create_schema(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS exams (id TEXT PRIMARY KEY, workflow_id TEXT NOT NULL, "
            "created_at REAL NOT NULL)"
        )


def workflow_of(path: Path, exam_id: str) -> str | None:
    with connect(path) as conn:
        row = conn.execute("SELECT workflow_id FROM exams WHERE id = ?", (exam_id,)).fetchone()
    return None if row is None else str(row[0])


def record(path: Path, exam_id: str, workflow_id: str) -> str:
    """Record the exam's workflow; if another request recorded one first, return that one."""
    with connect(path) as conn:
        conn.execute(
            "INSERT OR IGNORE INTO exams VALUES (?, ?, ?)", (exam_id, workflow_id, time.time())
        )
        row = conn.execute("SELECT workflow_id FROM exams WHERE id = ?", (exam_id,)).fetchone()
    return str(row[0])
