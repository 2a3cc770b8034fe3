"""PostgreSQL for tests: a private database per test session, a private schema per backend.

The server is ``OFFLOAD_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``,
a URL whose user may create databases; the test command starts a private cluster when none
answers). The first test that needs PostgreSQL creates a database named ``offload_test_...``;
the session drops it (only that one: other sessions may share the server) when it ends.
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest

TEST_POSTGRES = os.environ.get(
    "OFFLOAD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)

_state: dict[str, str | None] = {}  # "database": the URL of this session's database, once made


def _with_database(base: str, name: str) -> str:
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def session_database() -> str:
    """The URL of this session's database (made on first use); skips when no server answers."""
    if "database" not in _state:
        import psycopg

        name = f"offload_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        try:
            with psycopg.connect(TEST_POSTGRES, autocommit=True, connect_timeout=3) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
            _state["database"] = _with_database(TEST_POSTGRES, name)
        except psycopg.OperationalError as exc:
            _state["database"] = None
            _state["error"] = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    url = _state["database"]
    if url is None:
        pytest.skip(f"no PostgreSQL server answers at {TEST_POSTGRES} ({_state['error']})")
    return url


def postgres_schema_url(base: str | None = None) -> str:
    """A backend URL with a fresh schema in this session's database."""
    return f"{base or session_database()}?schema=t_{uuid.uuid4().hex[:12]}"


def drop_test_database() -> None:
    """Drop this session's database, if it made one."""
    url = _state.pop("database", None)
    if not url:
        return
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(TEST_POSTGRES, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
