"""Fixtures shared by every test directory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

import offload
from offload.backends.memory import MemoryBackend
from offload.settings import Settings
from pgkit import drop_test_database, postgres_schema_url
from rediskit import drop_test_namespaces, redis_namespace_url
from upkit import RunningUp, free_port


@pytest.fixture(scope="session", autouse=True)
def _drop_redis_test_namespaces() -> Iterator[None]:
    """Tests make Redis namespaces as they go; remove them all when the session ends."""
    yield
    drop_test_namespaces()
    drop_test_database()


@pytest.fixture
def fast_settings(tmp_path: object) -> Settings:
    """Short timings so that lease expiry, reaping and shutdown take moments, not minutes."""
    return Settings(
        lease_seconds=1.5,
        renew_interval=0.3,
        reap_interval=0.3,
        cancel_poll=0.05,
        shutdown_grace=1.0,
        idle_wait=0.2,
        concurrency=4,
    )


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
async def app(
    request: pytest.FixtureRequest, tmp_path: Path, fast_settings: Settings
) -> AsyncIterator[offload.App]:
    """An App on each backend in turn (a fresh store each time), with the fast settings."""
    if request.param == "memory":
        app = offload.App(MemoryBackend(), settings=fast_settings)
    elif request.param == "redis":
        app = offload.App(settings=fast_settings.with_(backend=redis_namespace_url()))
    elif request.param == "postgres":
        app = offload.App(settings=fast_settings.with_(backend=postgres_schema_url()))
    else:
        app = offload.App(settings=fast_settings.with_(backend=f"sqlite:///{tmp_path}/jobs.db"))
    yield app
    await app.aclose()


@pytest.fixture
def offload_up(tmp_path: Path) -> Iterator[RunningUp]:
    """``offload up`` on a free port with a fresh SQLite file, ready; stopped at the end."""
    port = free_port()
    env = {**os.environ, "OFFLOAD_BACKEND": f"sqlite:///{tmp_path}/offload.db"}
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "offload", "up", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = RunningUp(proc, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{running.base}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield running
        if proc.poll() is None:
            running.stop()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
