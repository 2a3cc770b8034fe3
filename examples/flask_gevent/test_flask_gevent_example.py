"""The Flask app from its README: gunicorn with gevent workers, an offload worker, per-client
limits checked from what the backend recorded."""

from __future__ import annotations

import itertools
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import RunExample  # the fixture's type (pytest passes the fixture)

pytestmark = pytest.mark.slow  # real servers and workers, seconds each


RATE_INTERVAL = 0.5  # key_rate_limit="2/s": starts of one client's reports are 0.5 s apart
FLOOD = 8


def history(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    return list(client.get(f"/jobs/{job_id}/history").json()["transitions"])


def started(changes: list[dict[str, Any]]) -> float:
    [at] = [c["at"] for c in changes if c["to_status"] == "running"]
    return datetime.fromisoformat(at).timestamp()


def finished(changes: list[dict[str, Any]]) -> float:
    return datetime.fromisoformat(changes[-1]["at"]).timestamp()


def test_reports_are_accepted_at_once_and_started_at_each_clients_pace(
    run_example: RunExample,
) -> None:
    app = run_example("flask_gevent")
    with httpx.Client(base_url=app.base, timeout=10) as client:
        health = client.get("/health")
        assert health.headers["server"] == "gunicorn"
        assert health.json() == {"status": "ok", "gevent": True}  # patched: a gevent worker
        assert client.post("/reports", json={}).status_code == 400  # who is asking?
        too_big = client.post("/reports", json={"rows": 10**9}, headers={"X-Client-Id": "a"})
        assert too_big.status_code == 422

        flood = []
        for _ in range(FLOOD):  # client a floods; every request is accepted at once
            answer = client.post("/reports", json={"rows": 20_000}, headers={"X-Client-Id": "a"})
            assert answer.status_code == 202, answer.text
            assert answer.headers["location"] == f"/jobs/{answer.json()['id']}"
            flood.append(answer.json()["id"])
        other = client.post("/reports", json={"rows": 20_000}, headers={"X-Client-Id": "b"})
        assert other.status_code == 202

        deadline = time.monotonic() + 40
        for job_id in [*flood, other.json()["id"]]:
            while (job := client.get(f"/jobs/{job_id}").json())["status"] != "succeeded":
                assert job["status"] in ("queued", "scheduled", "running"), job
                assert time.monotonic() < deadline, job
                time.sleep(0.1)
        a_histories = [history(client, job_id) for job_id in flood]
        b_start = started(history(client, other.json()["id"]))

    a_starts = sorted(map(started, a_histories))
    for n, start in enumerate(a_starts):  # never faster than 2 a second (backend clock)
        assert start - a_starts[0] >= n * RATE_INTERVAL - 0.05, (n, start - a_starts[0])
    runs = sorted((started(h), finished(h)) for h in a_histories)
    for (_, end), (begin, _) in itertools.pairwise(runs):
        assert begin >= end  # key_concurrency=1: one of a's reports at a time
    assert any(c["reason"] == "rate_limited" for h in a_histories for c in h)  # deferred
    assert b_start < a_starts[2]  # b did not wait behind a's backlog
