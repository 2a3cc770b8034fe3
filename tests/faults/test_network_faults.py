"""The network between offload and Redis failing: cut off past a lease, paused, reset.

Every test runs on a private ``redis-server`` (``outage`` fixture). Processes reach it through a
small TCP proxy in the test process (``netproxy.Proxy``) or directly, so that one worker can be
cut off while another is not; ``CLIENT PAUSE`` stops Redis answering everyone at once.

The API runs as a real ``offload serve`` with ``socket_timeout=1`` in its Redis URL, so that a
request waits at most about two seconds (one try and one retry) before it answers 503; the
default timeout is 15 s. Whatever the fault, an answer 2xx means the job is stored (no false
2xx), and a 503 retried with the same ``Idempotency-Key`` ends as exactly one job.
"""

from __future__ import annotations

import random
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from faultkit import HERE, LEASE, Api, Faults, pid_of, read_ledger, wait_until
from netproxy import Proxy

from offload import State, Transition
from rediskit import RedisServer
from upkit import free_port

pytestmark = pytest.mark.slow

#: Seconds of ``CLIENT PAUSE``: four leases, room for the API's 503s.
PAUSE = 6.0


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[Proxy]:
    p = Proxy(redis_server.port)
    p.start()
    try:
        yield p
    finally:
        p.close()


def reasons(history: list[Transition]) -> list[str]:
    return [t.reason.value for t in history]


def url(port: int, **options: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"prefix": "outage", **options}.items())
    return f"redis://127.0.0.1:{port}/0?{query}"


def post(api: Api, ledger: str, key: str, i: int, timeout: float = 10.0) -> httpx.Response:
    body = {"task": "tally", "args": [ledger, i]}
    return httpx.post(
        f"{api.base}/v1/jobs", json=body, headers={"Idempotency-Key": key}, timeout=timeout
    )


def submit_until_accepted(
    api: Api, ledger: str, key: str, i: int, deadline: float = 30.0, *, known_500: bool = False
) -> tuple[str, int]:
    """POST with ``key`` until 202; returns the job id and how many refusals came first: 503s
    (and, with ``known_500``, the 500s of the bug in section 3 of this module). Any other answer
    fails the test."""
    refused = 0
    give_up = time.monotonic() + deadline
    while True:
        answer = post(api, ledger, key, i)
        if answer.status_code == 202:
            return answer.json()["id"], refused
        if known_500 and answer.status_code == 500:
            assert answer.json()["error"]["code"] == "internal_error"
        else:
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] == "backend_unavailable"
            assert "Retry-After" in answer.headers
        refused += 1
        assert time.monotonic() < give_up, f"key {key}: still refused after {deadline:g}s"
        time.sleep(0.1)


def jobs_with_key(faults: Faults, key: str) -> list[str]:
    return [r.id for r in faults.all_records().values() if r.idempotency_key == key]


# -- 1. a worker cut off past its lease --------------------------------------------------------
@pytest.mark.parametrize("fault", ["blackhole", "pause"])
def test_worker_cut_off_past_its_lease_fences_itself(
    outage: Faults, redis_server: RedisServer, proxy: Proxy, fault: str
) -> None:
    """Worker A (and the API) reach Redis through the proxy, worker B directly. A runs a long
    job and a short one; then A is cut off (``blackhole``: the proxy holds everything back) or
    Redis stops answering everyone (``pause``: ``CLIENT PAUSE ALL``) for longer than a lease.
    The short job finishes while A is cut off, so its completion waits in the network.

    A must stop the long job itself before its lease can have expired; both jobs run again (on
    B; after a pause, on either); A's late completion of the short one, delivered when the
    network heals, is rejected. Meanwhile the API answers 503, and the 503 retried with its
    Idempotency-Key gives one job."""
    faults = outage
    ledger, flag = str(faults.ledger), faults.tmp / "finish-short"
    api_port = proxy.port if fault == "blackhole" else redis_server.port
    api = faults.serve("api", backend=url(api_port, socket_timeout="1"))
    a = faults.start("a", env={"OFFLOAD_BACKEND": url(proxy.port)})
    [long] = faults.submit_many("tally", [[ledger, 0, 30.0, 0.05]])
    [short] = faults.submit_many("tally_until", [[ledger, 1, str(flag)]])
    wait_until(lambda: len(read_ledger(faults.ledger)) == 2, 10, "A to start both jobs")
    b = faults.start("b", env={"OFFLOAD_BACKEND": url(redis_server.port)})
    assert post(api, ledger, "before", 0).status_code == 202

    began = time.time()
    control = redis.Redis(port=redis_server.port)
    if fault == "blackhole":
        proxy.blackhole()
        where = faults.note_fault("partition", {a.pid, api.process.pid}, began)
    else:
        control.execute_command("CLIENT", "PAUSE", int(PAUSE * 1000), "ALL")
        where = faults.note_fault("pause", None, began, end=began + PAUSE)
    flag.touch()  # the short job returns now: its completion cannot get through

    # The API does not pretend: 503 while Redis cannot be reached from it.
    during = post(api, ledger, "during", 2)
    assert during.status_code == 503, during.text
    assert during.json()["error"]["code"] == "backend_unavailable"
    assert httpx.get(f"{api.base}/health/ready", timeout=10).status_code == 503
    # A stops the long job by itself, before its lease can have run out.
    a.wait_log(f"lease on job {long} could not be renewed in time; stopping it", timeout=LEASE + 3)
    [first_long] = [r for r in read_ledger(faults.ledger) if (r.job, r.pid) == (long, a.pid)]
    assert first_long.outcome == "cancelled"
    assert first_long.end is not None
    assert first_long.end - began < LEASE, f"stopped {first_long.end - began:.2f}s into the cut"
    faults.measured["fenced_after"] = round(first_long.end - began, 2)

    if fault == "blackhole":  # B, not cut off, takes both jobs over while A still is
        for job in (long, short):
            faults.wait_status(faults.app.get_job(job), State.SUCCEEDED, 10)
        proxy.heal()
        where.end = time.time()
    else:
        wait_until(lambda: time.time() > began + PAUSE, 10, "the pause to end")
        for job in (long, short):
            faults.wait_status(faults.app.get_job(job), State.SUCCEEDED, 10)
    control.close()
    a.wait_log(f"job {short}: lease lost before its outcome (succeeded) was written; discarded")

    histories = faults.histories([long, short])
    # With the pause, A and B were stopped alike: either may rerun; with the blackhole, B did.
    rerunners = {b.pid} if fault == "blackhole" else {a.pid, b.pid}
    for job in (long, short):
        history = histories[job]
        assert reasons(history) == [
            "submitted",
            "claimed",
            "lease_expired",
            "claimed",
            "succeeded",
        ], job
        first, second = (t for t in history if t.reason.value == "claimed")
        assert pid_of(first.worker_id) == a.pid
        assert pid_of(second.worker_id) in rerunners
        assert history[-1].token == second.token  # the rerun's result, not A's late one
    runs = {(r.job, r.attempt): r for r in read_ledger(faults.ledger)}
    # No overlap: A's long run had stopped before the rerun began.
    stopped = runs[long, 1].end
    assert stopped is not None
    assert stopped <= runs[long, 2].at
    # A's short run did finish: its completion was the one rejected.
    assert runs[short, 1].outcome == "returned"

    # After the fault: the 503'd submit retried with its key is one job; A works again.
    job_id, _ = submit_until_accepted(api, ledger, "during", 2)
    assert jobs_with_key(faults, "during") == [job_id]
    faults.acknowledge([job_id, *jobs_with_key(faults, "before")])
    b.signal(signal.SIGTERM)
    assert b.wait_exit(10) == 0
    [after] = faults.submit_many("tally", [[ledger, 3]])
    faults.wait_status(faults.app.get_job(after), State.SUCCEEDED, 10)
    assert [r.pid for r in read_ledger(faults.ledger) if r.job == after] == [a.pid]
    assert "Traceback" not in a.text()


# -- 2. connections reset under load -----------------------------------------------------------
def test_connection_resets_under_load_lose_nothing(
    outage: Faults, redis_server: RedisServer, proxy: Proxy, chaos: random.Random
) -> None:
    """Two workers, a submitter process and the API all reach Redis through the proxy, which
    resets every connection at random moments (seeded). A reset loses whatever reply was in
    flight: a claim's (that job's lease then expires and it runs again), a submit's (retried
    with the same job id), an outcome's. Nothing acknowledged is lost, nothing is stored twice,
    and every rerun is explained by a reset."""
    faults = outage
    via, ledger = url(proxy.port), str(faults.ledger)
    workers = [
        faults.start(f"w{n}", "--concurrency", "4", env={"OFFLOAD_BACKEND": via}) for n in (1, 2)
    ]
    api = faults.serve("api", backend=url(proxy.port, socket_timeout="1"))
    acks, stop = faults.tmp / "acks.txt", faults.tmp / "stop"
    submitter = faults.spawn(
        "submitter",
        [
            sys.executable,
            str(HERE / "submitter.py"),
            str(acks),
            ledger,
            str(stop),
            "5000",
        ],
        env={"OFFLOAD_BACKEND": via},
    )
    wait_until(lambda: len(acknowledged(acks)) >= 50, 30, "50 acknowledged submits")

    delays = [chaos.uniform(0.1, 0.6) for _ in range(RESETS)]
    resets: list[int] = []

    def reset_now_and_then() -> None:
        for delay in delays:
            time.sleep(delay)  # the chaos itself: when the next reset strikes
            at = time.time()
            resets.append(proxy.reset())
            faults.note_fault("reset", None, at, end=at)

    resetter = threading.Thread(target=reset_now_and_then, name="resets")
    resetter.start()
    keys: list[str] = []
    unavailable = 0
    while resetter.is_alive():
        key = f"k{len(keys)}"
        job_id, refused = submit_until_accepted(api, ledger, key, len(keys), known_500=True)
        keys.append(key)
        unavailable += refused
        faults.acknowledge([job_id])
    resetter.join()
    stop.touch()
    assert submitter.wait_exit(30) == 0
    acked = acknowledged(acks)
    assert len(set(acked)) == len(acked), "a job id was acknowledged twice"
    faults.acknowledge(acked)
    counts = faults.wait_all_ended(len(faults.acknowledged), timeout=30)
    assert counts[State.SUCCEEDED] == counts.total(), counts

    assert sum(resets) > RESETS, f"the resets hit {resets} connections"
    for key in keys:  # a 503 retried with its key, or a reply lost and retried: one job
        assert len(jobs_with_key(faults, key)) == 1, key
    for w in workers:
        assert w.proc.poll() is None, f"worker {w.name} exited"
        assert "Traceback" not in w.text()
    faults.measured.update(
        resets=RESETS, sockets_reset=sum(resets), api_submits=len(keys), api_refusals=unavailable
    )


#: How many times the proxy resets every connection.
RESETS = 12


def acknowledged(path: Path) -> list[str]:
    """Job ids the submitter saw acknowledged (whole lines only)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [line for line in text.split("\n")[:-1] if line]


# -- 3. a known bug ------------------------------------------------------------------------------
def test_api_answers_503_not_500_after_its_redis_connection_was_reset(
    outage: Faults, proxy: Proxy
) -> None:
    faults = outage
    ledger = str(faults.ledger)
    api = faults.serve("api", backend=url(proxy.port))
    assert post(api, ledger, "first", 0).status_code == 202  # the API now pools a connection
    before = proxy.connections
    assert proxy.reset() > 0
    # Reset, and (a client quick to reconnect opens new connections at once) noticed.
    wait_until(
        lambda: proxy.connections_open() == 0 or proxy.connections > before,
        5,
        "the reset to reach the API",
    )
    answer = post(api, ledger, "second", 1)
    assert answer.status_code in (202, 503), answer.text


def test_offload_up_keeps_running_jobs_after_its_redis_connection_was_reset(
    outage: Faults, proxy: Proxy
) -> None:
    faults = outage
    ledger = str(faults.ledger)
    api = spawn_up(faults, proxy.port)
    api.process.wait_log(" serving ", timeout=30)
    wait_until(lambda: _ready(api), 30, "offload up to be ready")
    first, _ = submit_until_accepted(api, ledger, "first", 0)
    faults.wait_status(faults.app.get_job(first), State.SUCCEEDED, 10)
    before = proxy.connections
    assert proxy.reset() > 0
    # Reset, and (a client quick to reconnect opens new connections at once) noticed.
    wait_until(
        lambda: proxy.connections_open() == 0 or proxy.connections > before,
        5,
        "the reset to reach offload up",
    )
    second, _ = submit_until_accepted(api, ledger, "second", 1, known_500=True)
    faults.acknowledge([first, second])
    faults.wait_status(faults.app.get_job(second), State.SUCCEEDED, 5)


def spawn_up(faults: Faults, redis_port: int) -> Api:
    """A real ``offload up`` of ``faultapp`` on a free port, its Redis at ``redis_port``."""
    port = free_port()
    up = faults.spawn(
        "up",
        [sys.executable, "-m", "offload", "up", "faultapp:app", "--port", str(port)],
        env={"OFFLOAD_BACKEND": url(redis_port)},
    )
    up.reaps = True
    return Api(up, f"http://127.0.0.1:{port}")


def _ready(api: Api) -> bool:
    try:
        return httpx.get(f"{api.base}/health/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_offload_up_waits_for_a_backend_that_is_down_at_start(
    outage: Faults, redis_server: RedisServer
) -> None:
    """Redis unreachable when ``offload up`` starts, reachable later: readiness says 503 until
    the embedded worker runs, and then a job submitted meanwhile runs (no silent dead worker)."""
    faults = outage
    ledger = str(faults.ledger)
    proxy = Proxy(redis_server.port)  # its port refuses connections until it starts
    api = spawn_up(faults, proxy.port)
    api.process.wait_log("backend unavailable at start", timeout=30)
    wait_until(lambda: _answers(api), 30, "offload up to answer")
    assert httpx.get(f"{api.base}/health/ready", timeout=5).status_code == 503
    proxy.start()
    try:
        api.process.wait_log(" serving ", timeout=30)
        wait_until(lambda: _ready(api), 30, "offload up to be ready")
        job, _ = submit_until_accepted(api, ledger, "late", 0)
        faults.acknowledge([job])
        faults.wait_status(faults.app.get_job(job), State.SUCCEEDED, 10)
    finally:
        proxy.close()


def _answers(api: Api) -> bool:
    try:
        return httpx.get(f"{api.base}/health/live", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
