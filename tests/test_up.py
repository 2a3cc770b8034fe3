"""``offload up``: API and an embedded worker in one process, on the bundled demo tasks."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import uvloop

import offload
import offload.up
from offload.api.auth import TokenTable
from offload.errors import ConfigurationError
from offload.up import check_bind, run_up, serve
from upkit import RunningUp, free_port


@pytest.mark.slow
def test_up_serves_runs_a_demo_job_and_stops_on_sigint(offload_up: RunningUp) -> None:
    with httpx.Client(base_url=offload_up.base, timeout=5) as http:
        deadline = time.monotonic() + 30
        created = http.post("/v1/jobs", json={"task": "send_email", "args": ["a@b.c", "hi"]})
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        while (job := http.get(f"/v1/jobs/{job_id}").json())["status"] != "succeeded":
            assert job["status"] in ("queued", "running"), job
            assert time.monotonic() < deadline, offload_up.log.read_text()
            time.sleep(0.05)
        assert job["result"]["status"] == "sent"
    offload_up.stop()
    log = offload_up.log.read_text()
    assert "received SIGINT: shutting down" in log
    assert "HTTP/1.1" not in log  # no uvicorn access log: offload logs requests at DEBUG


def test_binding_beyond_loopback_needs_tokens() -> None:
    check_bind("127.0.0.1", TokenTable())
    check_bind("::1", TokenTable())
    check_bind("localhost", TokenTable())
    with pytest.raises(ConfigurationError, match="without API tokens"):
        check_bind("0.0.0.0", TokenTable())
    check_bind("0.0.0.0", TokenTable.parse("secret=acme:admin"))


SETTINGS_APP = """
import offload
from offload.settings import Settings
app = offload.App(settings=Settings(backend="memory://"))
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_checks_the_bind_against_the_tokens_the_api_serves(
    workers: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OFFLOAD_TOKENS in the environment, an App whose own Settings have none: refused."""
    (tmp_path / "settingsapp.py").write_text(SETTINGS_APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("OFFLOAD_TOKENS", "secret=acme:admin")
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: calls.append(kw))
    with pytest.raises(ConfigurationError, match="App's settings have no tokens"):
        serve("settingsapp:app", host="0.0.0.0", port=1, workers=workers)
    assert calls == []
    with pytest.raises(ConfigurationError, match="App's settings have no tokens"):
        asyncio.run(offload.up.up("settingsapp:app", host="0.0.0.0", port=1, concurrency=1))
    monkeypatch.setenv("OFFLOAD_APP", "settingsapp:app")
    monkeypatch.setenv("OFFLOAD_SERVE_HOST", "0.0.0.0")
    with pytest.raises(ConfigurationError, match="have no tokens"):
        offload.up.asgi_from_env()


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Undo a ``gc.freeze()`` of the code under test, for the tests that follow."""
    yield
    gc.unfreeze()


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_freezes_the_built_heap_and_leaves_out_the_access_log(
    workers: int, monkeypatch: pytest.MonkeyPatch, unfrozen: None
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: calls.append(kw))
    monkeypatch.setenv("OFFLOAD_APP", "")  # serve() sets it for its uvicorn processes
    gc.unfreeze()
    serve("offload.demo:app", host="127.0.0.1", port=1, workers=workers)
    assert calls[0]["access_log"] is False
    if workers == 1:
        assert gc.get_freeze_count() > 0
    else:  # each uvicorn process builds the app with the factory, which freezes its heap
        assert calls[0]["factory"] is True
        assert gc.get_freeze_count() == 0
        offload.up.asgi_from_env()
        assert gc.get_freeze_count() > 0


def test_up_runs_on_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def fake_up(app_path: str | None, **_: object) -> None:
        loops.append(asyncio.get_running_loop())

    monkeypatch.setattr(offload.up, "up", fake_up)
    run_up(None, host="127.0.0.1", port=1, concurrency=None)
    assert isinstance(loops[0], uvloop.Loop)


def run_offload_up(cwd: Path, port: int, backend: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OFFLOAD_BACKEND": backend}
    return subprocess.run(
        [sys.executable, "-m", "offload", "up", "--port", str(port)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_up_on_a_busy_port_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        done = run_offload_up(tmp_path, busy.getsockname()[1], f"sqlite:///{tmp_path}/o.db")
    assert done.returncode == 1
    assert done.stderr.startswith("offload: error: cannot listen on 127.0.0.1:")
    assert done.stderr.count("\n") == 1, done.stderr
    assert "serving" not in done.stdout + done.stderr  # the worker never started


@pytest.mark.parametrize("port", [70000, -1])
def test_up_on_a_port_out_of_range_is_one_line_and_exit_1(tmp_path: Path, port: int) -> None:
    done = run_offload_up(tmp_path, port, f"sqlite:///{tmp_path}/o.db")  # was an OverflowError
    assert done.returncode == 1
    assert done.stderr == (
        f"offload: error: cannot listen on 127.0.0.1:{port}: a port is a number from 0 to 65535\n"
    )


def test_serve_refuses_a_port_out_of_range() -> None:
    # uvicorn listened on 99999 modulo 65536 (34463) and announced 99999.
    with pytest.raises(ConfigurationError, match="from 0 to 65535"):
        serve("offload.demo:app", host="127.0.0.1", port=99999, workers=1)


def test_up_on_an_unopenable_database_is_one_line_and_exit_1(tmp_path: Path) -> None:
    done = run_offload_up(tmp_path, free_port(), "sqlite:////no/such/folder/o.db")
    assert done.returncode == 1
    assert done.stderr == (
        "offload: error: cannot open SQLite database '/no/such/folder/o.db': "
        "folder '/no/such/folder' does not exist\n"
    )


def test_up_refuses_a_corrupted_sqlite_file_naming_it(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    with offload.App(f"sqlite:///{db}") as app:

        @app.task
        def noop(i: int) -> None: ...

        for i in range(300):
            noop.submit(i)
    with db.open("r+b") as f:  # overwrite some pages in the middle with garbage
        f.seek(4096 * 3)
        f.write(b"\xa5" * 4096 * 4)
    done = run_offload_up(tmp_path, free_port(), f"sqlite:///{db}")
    assert done.returncode == 1
    assert done.stderr.startswith(f"offload: error: SQLite database '{db}' is corrupted")
    assert done.stderr.count("\n") == 1, done.stderr


async def test_readiness_is_503_while_the_embedded_worker_does_not_run() -> None:
    reason: list[str | None] = ["the embedded worker is not running"]
    api = offload.up.build_api(offload.App("memory://"), "127.0.0.1", not_ready=lambda: reason[0])
    async with api.router.lifespan_context(api):
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            down = await http.get("/health/ready")
            assert down.status_code == 503
            assert "embedded worker is not running" in down.json()["error"]["message"]
            reason[0] = None
            assert (await http.get("/health/ready")).status_code == 200


def test_serve_passes_the_http_limits_to_uvicorn(
    monkeypatch: pytest.MonkeyPatch, unfrozen: None
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: calls.append(kw))
    monkeypatch.setenv("OFFLOAD_HTTP_MAX_CONNECTIONS", "7")
    monkeypatch.setenv("OFFLOAD_HTTP_KEEP_ALIVE", "3")
    monkeypatch.setenv("OFFLOAD_APP", "")
    monkeypatch.delitem(sys.modules, "offload.demo", raising=False)  # its App reads the env
    for workers in (1, 2):
        serve("offload.demo:app", host="127.0.0.1", port=1, workers=workers)
    assert [(c["limit_concurrency"], c["timeout_keep_alive"]) for c in calls] == [(7, 3)] * 2


@pytest.mark.slow
def test_up_answers_503_beyond_its_connection_limit(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "OFFLOAD_BACKEND": f"sqlite:///{tmp_path}/o.db",
        "OFFLOAD_HTTP_MAX_CONNECTIONS": "2",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "offload", "up", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/health/live").status_code == 200:
                    break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        with socket.create_connection(("127.0.0.1", port)):  # holds one of the two
            # (polled: the server may take a moment to accept the held connection)
            while httpx.get(f"http://127.0.0.1:{port}/health/live").status_code != 503:
                assert time.monotonic() < deadline + 30, "never refused beyond the limit"
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(20)
