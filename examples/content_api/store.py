"""Creators and their posts in SQLite. Plain blocking functions: call them from a thread."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS creators (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    niche TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS posts (
    id TEXT PRIMARY KEY,  -- the id of the job that wrote it: a rerun overwrites, never duplicates
    creator_id INTEGER NOT NULL REFERENCES creators (id),
    topic TEXT NOT NULL,
    title TEXT NOT NULL,
    sections TEXT NOT NULL,  -- JSON list of paragraphs
    images TEXT NOT NULL,  -- JSON list of file paths
    created_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Creator:
    id: int
    name: str
    email: str
    niche: str


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """One short-lived connection: commits on success, always closes."""
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
        conn.executescript(SCHEMA)


def add_creator(path: Path, name: str, email: str, niche: str) -> Creator:
    with connect(path) as conn:
        cur = conn.execute(
            "INSERT INTO creators (name, email, niche, created_at) VALUES (?, ?, ?, ?)",
            (name, email, niche, time.time()),
        )
        assert cur.lastrowid is not None
        return Creator(cur.lastrowid, name, email, niche)


def get_creator(path: Path, creator_id: int) -> Creator | None:
    with connect(path) as conn:
        row = conn.execute(
            "SELECT id, name, email, niche FROM creators WHERE id = ?", (creator_id,)
        ).fetchone()
    return None if row is None else Creator(*row)


def save_post(
    path: Path,
    post_id: str,
    creator_id: int,
    topic: str,
    title: str,
    sections: list[str],
    images: list[str],
) -> None:
    with connect(path) as conn:
        conn.execute(
            "INSERT OR REPLACE INTO posts VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                post_id,
                creator_id,
                topic,
                title,
                json.dumps(sections),
                json.dumps(images),
                time.time(),
            ),
        )
