"""Checks on a SQLite backend's file made before it is used: is it there, is it sound.

Opening a SQLite database creates the file when it is missing; a command that only reads
(``offload jobs``, ``status``) must not do that in whatever folder it was run from. And a
corrupted file opens fine, then fails at the first query that touches a bad page; ``offload
up`` checks it once (``PRAGMA quick_check``) so that it refuses to start instead.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from offload.backends._common import parse_url
from offload.errors import ConfigurationError


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite://`` URL (None for any other backend)."""
    parsed = parse_url(url)
    if parsed.scheme != "sqlite":
        return None
    return Path(parsed.path[1:] if parsed.path.startswith("/") else parsed.path)


def require_existing(url: str) -> None:
    """Refuse a ``sqlite://`` URL whose file does not exist (it would be created empty)."""
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise ConfigurationError(
            f"SQLite database {str(path.resolve())!r} does not exist; run this where the app "
            "keeps its jobs, or name the store with --backend URL or --app module:app"
        )


def require_sound(url: str) -> None:
    """Refuse a ``sqlite://`` URL whose existing file fails ``PRAGMA quick_check``."""
    path = sqlite_path(url)
    if path is None or not path.is_file():
        return
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            rows = conn.execute("PRAGMA quick_check(1)").fetchall()
        conn.close()
    except sqlite3.DatabaseError as exc:
        rows = [(str(exc),)]
    if rows != [("ok",)]:
        detail = " ".join(str(rows[0][0]).split()) if rows else "no answer"
        raise ConfigurationError(
            f"SQLite database {str(path.resolve())!r} is corrupted ({detail}); restore it "
            "from a backup or move it aside to start with an empty one"
        )
