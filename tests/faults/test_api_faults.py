"""The HTTP API as attackers and crowds meet it: real ``offload serve`` processes, real backends.

The in-process suite (tests/service/test_security.py, on memory:// and SQLite) covers every
refusal in detail: roles, messages, headers. Here the same status codes are checked through a
real server on SQLite and on Redis, with what only real processes show: 50 identical submissions
at once, spread over two API processes, make exactly one job; and the CLI refuses to listen
beyond loopback without tokens.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from faultkit import APP, HERE, Api, Faults

from offload import State
from rediskit import RedisServer
from upkit import free_port

pytestmark = pytest.mark.slow

TOKENS = "acme-admin=acme:admin,acme-submit=acme:submit,globex-admin=globex:admin"
ACME = {"Authorization": "Bearer acme-admin"}
GLOBEX = {"Authorization": "Bearer globex-admin"}
#: A documentation address (TEST-NET-1, RFC 5737): never this machine's, so nothing can bind it.
PUBLIC = "192.0.2.1"


def call(api: Api, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{api.base}{path}", timeout=30, **kwargs)


def test_refusals_through_a_real_server(faults: Faults) -> None:
    """401 without or with an unknown token; 404 for another tenant's job (read, history,
    events, cancel) and no trace of it in lists; 413 over 1 MiB; 415 for a body that is not
    JSON; 422 for an unknown task or arguments that do not fit. Nothing refused is stored."""
    api = faults.serve("api", env={"OFFLOAD_TOKENS": TOKENS})
    faults.start("w")
    body = {"task": "tally", "args": [str(faults.ledger), 0]}
    mine = call(api, "POST", "/v1/jobs", json=body, headers=ACME)
    assert mine.status_code == 202, mine.text
    job_id = mine.json()["id"]
    faults.acknowledge([job_id])

    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic YTpi"}):
        for method, path in (
            ("GET", "/v1/jobs"),
            ("POST", "/v1/jobs"),
            ("GET", f"/v1/jobs/{job_id}"),
        ):
            refused = call(api, method, path, headers=headers, json=body)
            assert refused.status_code == 401, (headers, path, refused.text)
            assert refused.headers["WWW-Authenticate"].startswith("Bearer")

    for method, path in (
        ("GET", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/history"),
        ("GET", f"/v1/jobs/{job_id}/events"),
        ("POST", f"/v1/jobs/{job_id}/cancel"),
        ("POST", f"/v1/jobs/{job_id}/retry"),
    ):
        hidden = call(api, method, path, headers=GLOBEX)
        assert hidden.status_code == 404, (path, hidden.text)
        assert hidden.json()["error"]["code"] == "job_not_found"
    listed = call(api, "GET", "/v1/jobs", headers=GLOBEX)
    assert listed.status_code == 200
    assert listed.json()["jobs"] == []

    big = {"task": "tally", "args": [str(faults.ledger), 1], "kwargs": {"later": 0}}
    huge = b'{"task": "tally", "args": ["' + b"x" * (1024 * 1024) + b'", 1]}'
    too_big = call(
        api, "POST", "/v1/jobs", content=huge, headers={**ACME, "Content-Type": "application/json"}
    )
    assert too_big.status_code == 413, too_big.text
    form = {**ACME, "Content-Type": "application/x-www-form-urlencoded"}
    not_json = call(api, "POST", "/v1/jobs", content=b"task=tally", headers=form)
    assert not_json.status_code == 415, not_json.text
    wrong: dict[str, Any]
    for wrong in (
        {"task": "no_such_task"},
        {**big, "args": [1, 2, 3, 4, 5, 6]},
        {**big, "kwargs": {"nope": 1}},
        {"args": []},
    ):
        answer = call(api, "POST", "/v1/jobs", json=wrong, headers=ACME)
        assert answer.status_code == 422, (wrong, answer.text)

    faults.wait_status(faults.app.get_job(job_id), State.SUCCEEDED, 10)
    assert list(faults.all_records()) == [job_id], "a refused request stored a job"


#: Identical submissions sent at once, half to each of two API processes.
CROWD = 50


def test_fifty_identical_submissions_at_once_make_one_job(faults: Faults) -> None:
    """50 clients send the same submission with the same Idempotency-Key at the same moment,
    25 to each of two ``offload serve`` processes on one backend: all get 202 with the same
    job, and exactly one job is stored. The same key with another body answers 409."""
    apis = [faults.serve(f"api{n}", env={"OFFLOAD_TOKENS": TOKENS}) for n in (1, 2)]
    body = {"task": "tally", "args": [str(faults.ledger), 7]}
    headers = {**ACME, "Idempotency-Key": "order-42"}
    start = threading.Barrier(CROWD)

    def submit(n: int) -> httpx.Response:
        with httpx.Client(base_url=apis[n % 2].base, timeout=30) as client:
            client.get("/health/live")  # connected: the barrier releases requests, not dials
            start.wait(30)
            return client.post("/v1/jobs", json=body, headers=headers)

    with ThreadPoolExecutor(CROWD) as pool:
        answers = list(pool.map(submit, range(CROWD)))
    assert [a.status_code for a in answers] == [202] * CROWD, {a.text for a in answers}
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 1, f"{len(ids)} different jobs"
    stored = [r for r in faults.all_records().values() if r.idempotency_key == "order-42"]
    assert [r.id for r in stored] == list(ids)
    faults.acknowledge(ids)

    other = call(
        apis[0], "POST", "/v1/jobs", headers=headers, json={**body, "args": [str(faults.ledger), 8]}
    )
    assert other.status_code == 409, other.text
    assert len(faults.all_records()) == 1
    faults.start("w")
    faults.wait_status(faults.app.get_job(ids.pop()), State.SUCCEEDED, 10)


@pytest.mark.parametrize("command", ["serve", "up"])
def test_refuses_to_listen_beyond_loopback_without_tokens(tmp_path: Path, command: str) -> None:
    """``offload serve`` and ``offload up`` on a non-loopback address without API tokens exit
    with a message, before binding anything. (The address is a documentation one, so even a
    missing check could not open a public port: it would fail to bind, with another message.)"""
    refused = run_cli(tmp_path, command, tokens=None)
    assert refused.returncode != 0
    assert f"refusing to listen on {PUBLIC} without API tokens" in refused.stdout
    if command == "serve":  # with tokens the check passes, and binding that address fails
        allowed = run_cli(tmp_path, command, tokens=TOKENS)
        assert allowed.returncode != 0
        assert "refusing" not in allowed.stdout
        assert "address" in allowed.stdout.lower(), allowed.stdout


def run_cli(tmp_path: Path, command: str, tokens: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    env.update(OFFLOAD_BACKEND=f"sqlite:///{tmp_path / 'jobs.db'}", PYTHONPATH=str(HERE))
    if tokens is not None:
        env["OFFLOAD_TOKENS"] = tokens
    argv = [
        sys.executable,
        "-m",
        "offload",
        command,
        APP,
        "--host",
        PUBLIC,
        "--port",
        str(free_port()),
    ]
    return subprocess.run(
        argv,
        cwd=HERE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


#: Clients reading one job at the same moment, through one API process.
READERS = 200


def test_two_hundred_reads_waiting_on_a_slow_redis_are_not_refused(
    outage: Faults, redis_server: RedisServer
) -> None:
    """Redis takes 3 s to answer (``CLIENT PAUSE``, well within the 15 s socket timeout) while
    200 clients read one job through one API process: every read should get its 200."""
    faults = outage
    api = faults.serve("api")
    job = call(api, "POST", "/v1/jobs", json={"task": "quick", "args": [1]})
    assert job.status_code == 202
    faults.allow_pending(job.json()["id"])
    start = threading.Barrier(READERS + 1)
    limits = httpx.Limits(max_connections=READERS)

    with httpx.Client(base_url=api.base, timeout=30, limits=limits) as client:

        def read(_: int) -> int:
            start.wait(30)
            try:
                return client.get(f"/v1/jobs/{job.json()['id']}").status_code
            except httpx.TransportError:
                return -1  # counted below, with the answers

        with ThreadPoolExecutor(READERS) as pool:
            answers = pool.map(read, range(READERS))
            control = redis.Redis(port=redis_server.port)
            control.execute_command("CLIENT", "PAUSE", 3000, "ALL")
            faults.note_fault("pause", None, time.time(), end=time.time() + 3.0)
            control.close()
            start.wait(30)
            codes = list(answers)
    assert codes == [200] * READERS, {c: codes.count(c) for c in set(codes)}
