"""``offload up``: API and an embedded worker in one process, on the bundled demo tasks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from offload.errors import ConfigurationError
from offload.service.auth import TokenTable
from offload.up import check_bind


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_up_serves_runs_a_demo_job_and_stops_on_sigint(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "OFFLOAD_BACKEND": f"sqlite:///{tmp_path}/offload.db"}
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "offload", "up", "--port", str(port)],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=5) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if http.get("/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            created = http.post("/v1/jobs", json={"task": "send_email", "args": ["a@b.c", "hi"]})
            assert created.status_code == 202, created.text
            job_id = created.json()["id"]
            while (job := http.get(f"/v1/jobs/{job_id}").json())["status"] != "succeeded":
                assert job["status"] in ("queued", "running"), job
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            assert job["result"]["status"] == "sent"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert "received SIGINT: shutting down" in log.read_text()


def test_binding_beyond_loopback_needs_tokens() -> None:
    check_bind("127.0.0.1", TokenTable())
    check_bind("::1", TokenTable())
    check_bind("localhost", TokenTable())
    with pytest.raises(ConfigurationError, match="without API tokens"):
        check_bind("0.0.0.0", TokenTable())
    check_bind("0.0.0.0", TokenTable.parse("secret=acme:admin"))
