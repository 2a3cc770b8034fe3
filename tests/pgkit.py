"""PostgreSQL for tests: a private database per test session, a private schema per backend.

The server is ``OFFLOAD_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``,
a URL whose user may create databases; the test command starts a private cluster when none
answers). The first test that needs PostgreSQL creates a database named ``offload_test_...``;
the session drops it (only that one: other sessions may share the server) when it ends.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from upkit import free_port

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


class PostgresServer:
    """A private PostgreSQL cluster (``initdb`` in ``workdir``, a free loopback port, fsync off)
    for tests that must stop or restart the server; never the shared one. As root, the cluster
    runs as the ``postgres`` user (PostgreSQL refuses root), like scripts/postgres-private.sh."""

    def __init__(self, workdir: Path) -> None:
        bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version)
        if not bindirs:
            pytest.skip("initdb is not installed: apt-get install postgresql")
        self.bin = Path(bindirs[-1])
        self.workdir = workdir
        self.data = workdir / "data"
        self.log = workdir / "postgres.log"
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        subprocess.run([*prefix, *argv], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if os.getuid() == 0:
            shutil.chown(self.workdir, "postgres")
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=100"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "30",
            "start",
            "-o",
            options,
        )

    def stop(self, mode: str = "immediate") -> None:
        """Stop the cluster; ``immediate`` is a crash (no checkpoint: recovery at next start)."""
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")


def _version(path: str) -> tuple[int, ...]:
    return tuple(int(p) for p in Path(path).parent.name.split(".") if p.isdigit())
