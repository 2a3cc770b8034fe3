"""``offload up``: API and an embedded worker in one process, on the bundled demo tasks."""

from __future__ import annotations

import time

import httpx
import pytest

from offload.errors import ConfigurationError
from offload.service.auth import TokenTable
from offload.up import check_bind
from upkit import RunningUp


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
    assert "received SIGINT: shutting down" in offload_up.log.read_text()


def test_binding_beyond_loopback_needs_tokens() -> None:
    check_bind("127.0.0.1", TokenTable())
    check_bind("::1", TokenTable())
    check_bind("localhost", TokenTable())
    with pytest.raises(ConfigurationError, match="without API tokens"):
        check_bind("0.0.0.0", TokenTable())
    check_bind("0.0.0.0", TokenTable.parse("secret=acme:admin"))
