"""JSON logs in real uvicorn and gunicorn processes: offload's lines (an embedded worker's
included) and the servers' own, each a JSON object, with the request id of the request they
belong to, carried into the job and its worker's lines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

import offload
from upkit import free_port

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of a log, each of which must be one JSON object."""
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}\n--- log:\n{text}") from None
    return parsed


class Host:
    """A server process on a free loopback port, its stdout and stderr in one log file."""

    def __init__(self, tmp_path: Path, argv: list[str], port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.db = tmp_path / "jobs.db"
        self.log = tmp_path / "server.log"
        env = {
            **os.environ,
            "OFFLOAD_BACKEND": f"sqlite:///{self.db}",
            "OFFLOAD_LOG_FORMAT": "json",
            "OFFLOAD_LOG_LEVEL": "DEBUG",
            "OFFLOAD_IDLE_WAIT": "0.05",
            "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)]),
        }
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def wait_ready(self, path: str) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.base + path, timeout=2)
                return
            except httpx.TransportError:
                assert self.proc.poll() is None, self.log.read_text()
                assert time.monotonic() < deadline, self.log.read_text()
                time.sleep(0.1)

    def stop(self) -> list[dict[str, Any]]:
        """SIGTERM; the whole log, parsed line by line."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(30) in (0, -signal.SIGTERM), self.log.read_text()
        return json_lines(self.log.read_text())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@contextmanager
def hosting(tmp_path: Path, argv: list[str]) -> Iterator[Host]:
    """``argv`` (its ``{port}`` filled in) serving, answering; killed at the end if need be."""
    port = free_port()
    host = Host(tmp_path, [arg.format(port=port) for arg in argv], port)
    try:
        host.wait_ready("/jobs/none")
        yield host
    finally:
        host.kill()


@pytest.fixture
def uvicorn(tmp_path: Path) -> Iterator[Host]:
    with hosting(tmp_path, [str(BIN / "uvicorn"), "logging_apps:api", "--port", "{port}"]) as host:
        yield host


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[Host]:
    """Flask under gunicorn, its own lines (the master's too) through ``dict_config``."""
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("import offload.logs\nlogconfig_dict = offload.logs.dict_config()\n")
    argv = [
        str(BIN / "gunicorn"),
        "-c",
        str(conf),
        "-w",
        "1",
        "-b",
        "127.0.0.1:{port}",
        "logging_apps:web",
    ]
    with hosting(tmp_path, argv) as host:
        yield host


def wait_succeeded(base: str, job_id: str) -> None:
    deadline = time.monotonic() + 20
    while httpx.get(f"{base}/jobs/{job_id}").json()["status"] != "succeeded":
        assert time.monotonic() < deadline, "the job did not finish"
        time.sleep(0.05)


def test_uvicorn_logs_json_with_the_request_id_into_the_embedded_worker(uvicorn: Host) -> None:
    r = httpx.post(
        f"{uvicorn.base}/greetings",
        params={"name": "ada"},
        headers={"X-Request-ID": "req-uvicorn-1"},
    )
    assert r.headers["x-request-id"] == "req-uvicorn-1"
    job_id = r.json()["id"]
    wait_succeeded(uvicorn.base, job_id)
    generated = httpx.get(f"{uvicorn.base}/jobs/{job_id}").headers["x-request-id"]
    lines = uvicorn.stop()  # every line is JSON, or this fails

    by = {
        name: [x for x in lines if x["logger"] == name]
        for name in ("uvicorn.error", "uvicorn.access", "offload.worker")
    }
    assert any("Application startup complete" in x["message"] for x in by["uvicorn.error"])
    access = [x for x in by["uvicorn.access"] if "POST /greetings" in x["message"]]
    assert [x["request_id"] for x in access] == ["req-uvicorn-1"]
    assert any(x.get("request_id") == generated for x in by["uvicorn.access"])
    serving = [x for x in by["offload.worker"] if "serving" in x["message"]]
    assert [x["level"] for x in serving] == ["INFO"]  # the embedded worker's INFO lines show
    done = [x for x in by["offload.worker"] if x.get("outcome") == "succeeded"]
    assert [(x["job_id"], x["request_id"]) for x in done] == [(job_id, "req-uvicorn-1")]


def test_gunicorn_logs_json_with_the_request_id_from_master_to_access_line(
    gunicorn: Host,
) -> None:
    r = httpx.post(f"{gunicorn.base}/greetings/ada", headers={"X-Request-ID": "req-gunicorn-1"})
    assert (r.status_code, r.headers["x-request-id"]) == (202, "req-gunicorn-1")
    r = httpx.post(f"{gunicorn.base}/greetings/bob")
    generated = r.headers["x-request-id"]
    lines = gunicorn.stop()

    errors = [x for x in lines if x["logger"] == "gunicorn.error"]
    assert any("Starting gunicorn" in x["message"] for x in errors)  # the master's lines too
    assert any("Booting worker" in x["message"] for x in errors)
    access = [x for x in lines if x["logger"] == "gunicorn.access"]
    assert [x["request_id"] for x in access if "POST /greetings" in x["message"]] == [
        "req-gunicorn-1",
        generated,
    ]
    with offload.App(f"sqlite:///{gunicorn.db}") as jobs:
        metas = {j.record.args[0]: j.record.meta.get("request_id") for j in jobs.jobs()}
    assert metas == {"ada": "req-gunicorn-1", "bob": generated}  # carried into the jobs


def test_a_wrong_format_or_level_says_what_to_write() -> None:
    from offload.errors import ConfigurationError
    from offload.logs import configure_logging, dict_config

    with pytest.raises(ConfigurationError, match="'text' or 'json'"):
        configure_logging("yaml", "INFO")
    with pytest.raises(ConfigurationError, match="DEBUG, INFO, WARNING"):
        dict_config("json", "LOUD")
