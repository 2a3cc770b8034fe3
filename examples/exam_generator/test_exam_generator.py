"""The exam generator from its README: a cap of 4 across two workers, flat memory, restarts.

Real processes on loopback: the web app (uvicorn), two offload workers with 4 slots each, and
the exam commands they run. The cap is checked from what the backend recorded (every job's
history), not from timings.
"""

from __future__ import annotations

import asyncio
import re
import signal
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from launcher import EXAMPLES, Launcher, descendants, free_port, tree_rss

if TYPE_CHECKING:
    from conftest import RunExample  # the fixture's type (pytest passes the fixture)

pytestmark = pytest.mark.slow  # real servers and workers, seconds each


HERE = EXAMPLES / "exam_generator"
EXAMS = 100
SLOTS = 4


def post_all(base: str, count: int, *, key_prefix: str | None = None) -> list[dict[str, Any]]:
    """``count`` POST /exams at the same moment (one connection each); their 202 bodies."""

    async def burst() -> list[dict[str, Any]]:
        limits = httpx.Limits(max_connections=count)
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

            async def one(n: int) -> dict[str, Any]:
                headers = {} if key_prefix is None else {"Idempotency-Key": f"{key_prefix}{n}"}
                answer = await client.post("/exams", json={"course": "algebra"}, headers=headers)
                assert answer.status_code == 202, answer.text
                return dict(answer.json())

            return await asyncio.gather(*(one(n) for n in range(count)))

    return asyncio.run(burst())


def running_intervals(client: httpx.Client, job_ids: list[str]) -> list[tuple[float, float]]:
    """When each job was running, from its recorded history (the backend's clock)."""
    intervals = []
    for job_id in job_ids:
        history = client.get(f"/jobs/{job_id}/history").json()["transitions"]
        began = None
        for change in history:
            at = datetime.fromisoformat(change["at"]).timestamp()
            if change["to_status"] == "running":
                began = at
            elif change["from_status"] == "running":
                assert began is not None
                intervals.append((began, at))
                began = None
    return intervals


def step_ids(client: httpx.Client, status: str | None = None) -> list[str]:
    """Every exam_step job the backend holds (with this status), a page at a time."""
    ids: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"task": "exam_step", "limit": 200}
        params |= {"cursor": cursor} if cursor else {}
        params |= {"status": status} if status else {}
        page = client.get("/jobs", params=params).json()
        ids += [job["id"] for job in page["jobs"]]
        if (cursor := page["next_cursor"]) is None:
            return ids


def unfinished(client: httpx.Client) -> int:
    """Steps that wait or run (the next steps of a workflow are stored as each step ends)."""
    return sum(len(step_ids(client, status)) for status in ("scheduled", "queued", "running"))


class MemorySampler(threading.Thread):
    """Samples the resident memory of the workers and their commands every 0.1 s."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.samples: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            self.samples.append(sum(tree_rss(pid)[0] for pid in self.pids))


def most_overlapping(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals that were open at one moment (an end before a start)."""
    events = sorted([(begin, 1) for begin, _ in intervals] + [(end, -1) for _, end in intervals])
    most = now = 0
    for _, change in events:
        now += change
        most = max(most, now)
    return most


def assert_valid_pdf(data: bytes) -> None:
    """A PDF whose cross-reference table points at every object it lists."""
    assert data.startswith(b"%PDF-")
    assert data.rstrip().endswith(b"%%EOF")
    [xref] = re.findall(rb"startxref\s+(\d+)\s+%%EOF", data)
    table = data[int(xref) :].split(b"trailer")[0].split(b"\n")
    assert table[0].strip() == b"xref"
    count = int(table[1].split()[1])
    for number, entry in enumerate(table[3 : 2 + count], start=1):
        offset = int(entry.split()[0])
        assert data[offset:].startswith(b"%d 0 obj" % number)


def test_100_requests_4_run_96_wait_and_cancel_kills_the_commands(
    run_example: RunExample,
) -> None:
    """Long data steps (20 s), so the state after the burst holds still while it is checked."""
    app = run_example("exam_generator", "--data-seconds", "20")
    workers = [pid for name, pid in app.children().items() if name.startswith("exams-")]
    assert len(workers) == 2
    exams = post_all(app.base, EXAMS)
    with httpx.Client(base_url=app.base, timeout=10) as client:
        deadline = time.monotonic() + 20
        while len(step_ids(client, "running")) < SLOTS:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.0)  # 8 free worker slots, and still no fifth job may start
        running, waiting = step_ids(client, "running"), step_ids(client, "queued")
        assert (len(running), len(waiting)) == (SLOTS, EXAMS - SLOTS)
        commands = sum(len(tree) for tree in map(_commands_of, workers))
        assert commands == SLOTS  # 4 make_data.py processes between the two workers

        for exam in exams:
            assert client.delete(f"/exams/{exam['exam_id']}").json()["status"] == "cancelled"
        deadline = time.monotonic() + 20
        while any(_commands_of(pid) for pid in workers):  # killed with their process groups
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert len(step_ids(client, status="cancelled")) == EXAMS  # the data steps; no others
        assert step_ids(client, status="succeeded") == []


def _commands_of(worker: int) -> list[int]:
    """The live external commands under a worker (not its warden, which is the worker's own)."""
    return [pid for pid in descendants(worker) if not _zombie(pid) and not _is_warden(pid)]


def _is_warden(pid: int) -> bool:
    try:
        return b"_warden_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Launcher, int]]:
    """The exam generator's processes, started one by one so that the test can kill one."""
    data = tmp_path / "data"
    env = {
        "OFFLOAD_BACKEND": f"sqlite:///{data / 'offload.db'}",
        "EXAMS_DIR": str(data / "exams"),
        "EXAMS_DB": str(data / "exams.db"),
        "EXAMS_DATA_SECONDS": "0.05",
        "PYTHONPATH": str(HERE),
    }
    data.mkdir()
    with (tmp_path / "stack.log").open("wb") as log, Launcher(env=env, output=log) as launcher:
        for n in (1, 2):
            launcher.worker(f"exams-{n}", HERE, concurrency=SLOTS)
        yield launcher, free_port()


def test_web_server_killed_mid_load_loses_no_acknowledged_exam(
    stack: tuple[Launcher, int],
) -> None:
    launcher, port = stack
    base = f"http://127.0.0.1:{port}"
    workers = list(launcher.processes)
    web = launcher.uvicorn(HERE, "app:api", port)
    acknowledged: dict[int, dict[str, Any]] = {}
    refused: list[int] = []

    async def submit(client: httpx.AsyncClient, n: int) -> None:
        while True:  # retried with the same key until acknowledged, across the restart
            try:
                answer = await client.post(
                    "/exams", json={"course": "algebra"}, headers={"Idempotency-Key": f"k{n}"}
                )
            except httpx.TransportError:
                refused.append(n)  # the server is down: not acknowledged, so try again
                await asyncio.sleep(0.1)
                continue
            assert answer.status_code == 202, answer.text
            acknowledged[n] = answer.json()
            return

    async def restart() -> None:
        while len(acknowledged) < 30:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(launcher.stop, web, sig=signal.SIGKILL)  # requests cut off
        assert len(acknowledged) < EXAMS
        await asyncio.to_thread(launcher.uvicorn, HERE, "app:api", port)  # on the same port

    async def load() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            lanes = asyncio.Semaphore(25)

            async def lane(n: int) -> None:
                async with lanes:
                    await submit(client, n)

            await asyncio.gather(restart(), *(lane(n) for n in range(EXAMS)))

    sampler = MemorySampler([w.pid for w in workers])
    sampler.start()
    try:
        asyncio.run(load())
        assert len(acknowledged) == EXAMS
        assert refused  # the kill did cut requests off
        with httpx.Client(base_url=base, timeout=10) as client:
            deadline = time.monotonic() + 45
            while unfinished(client):
                assert time.monotonic() < deadline, f"{unfinished(client)} steps unfinished"
                time.sleep(0.25)
            for exam in acknowledged.values():
                view = client.get(f"/exams/{exam['exam_id']}").json()
                assert view["status"] == "succeeded", view
                assert view["workflow_id"] == exam["workflow_id"]  # one workflow per exam
                assert view["steps"][-1]["result"]["done"] == ["data", "render", "compile"]
                assert_valid_pdf(client.get(view["pdf"]).content)
            steps = step_ids(client)
            assert len(steps) >= 3 * EXAMS
            assert most_overlapping(running_intervals(client, steps)) == SLOTS
    finally:
        sampler.done.set()
        sampler.join()
    low, high = min(sampler.samples), max(sampler.samples)
    print(f"two workers and their commands: RSS {low:.0f}-{high:.0f} MiB during the run")
    assert high - low < 150  # flat: at most 4 short commands at a time, never 100
