"""Workflows (chain, group, fan-in) on every backend: results, failure, cancel, status, bad
input, and durability across real worker crashes (SIGKILL)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

import offload
import workflow_app
from offload import State, chain, group
from offload.backends.memory import MemoryBackend
from offload.core.states import Reason
from offload.settings import Settings
from rediskit import redis_namespace_url

HERE = Path(__file__).resolve().parent
Status = offload.WorkflowStatus


@asynccontextmanager
async def running(app: offload.App) -> AsyncIterator[offload.Worker]:
    worker = offload.Worker(app)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)


async def wait_ended(job: offload.Job, timeout: float = 10.0) -> offload.Job:
    deadline = time.monotonic() + timeout
    while not (await job.arefresh()).record.is_terminal:
        assert time.monotonic() < deadline, f"job {job.id} still {job.status}"
        await asyncio.sleep(0.01)
    return job


async def status_of(job: offload.Job | None) -> State | None:
    return None if job is None else (await job.arefresh()).status


def arithmetic(app: offload.App) -> tuple[offload.Task[..., int], offload.Task[..., int]]:
    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task
    def mul(x: int, y: int = 2) -> int:
        return x * y

    return add, mul


# -- results flow ----------------------------------------------------------------------------------
async def test_chain_passes_each_result_to_the_next_step(app: offload.App) -> None:
    add, mul = arithmetic(app)
    wf = await app.asubmit_workflow(chain(add.s(1, 2), add.s(10), mul.s(y=3)))
    assert await wf.astatus() == Status.PENDING
    steps = await wf.asteps()
    assert steps[0] is not None
    assert steps[0].id == wf.id
    assert steps[1:] == [None, None]  # later steps are submitted when their turn comes
    async with running(app):
        assert await wf.aresult(timeout=10) == 39  # ((1 + 2) + 10) * 3
    assert await wf.astatus() == Status.SUCCEEDED
    jobs = [job for job in await wf.asteps() if job is not None]
    assert [job.id for job in jobs] == [wf.id, f"{wf.id}.1", f"{wf.id}.2"]
    assert [(job.record.args, job.record.kwargs) for job in jobs] == [
        ([1, 2], {}),
        ([3, 10], {}),
        ([13], {"y": 3}),
    ]
    assert [job.record.meta["workflow"]["path"] for job in jobs] == ["0", "1", "2"]


async def test_a_snapshot_status_always_agrees_with_its_steps(app: offload.App) -> None:
    add, mul = arithmetic(app)
    wf = await app.asubmit_workflow(chain(add.s(1, 2), add.s(10), mul.s(y=3)))
    first = await wf.asnapshot()
    assert first.status == Status.PENDING
    assert [job.id if job else None for job in first.steps] == [wf.id, None, None]
    seen: list[Status] = []
    async with running(app):
        for _ in range(2000):  # read while the steps run and end: each read must agree
            status, steps = await wf.asnapshot()
            seen.append(status)
            done = [job is not None and job.status is State.SUCCEEDED for job in steps]
            assert (status == Status.SUCCEEDED) == all(done), (status, steps)
            if status == Status.SUCCEEDED:
                break
            await asyncio.sleep(0.001)
    assert seen[-1] == Status.SUCCEEDED
    try:
        status, steps = await asyncio.to_thread(wf.snapshot)  # the sync face, from a thread
    finally:
        await asyncio.to_thread(app.close)  # the sync face's own connection
    assert status == Status.SUCCEEDED
    assert [job.record.result for job in steps if job] == [3, 13, 39]


async def test_group_fan_in_gets_results_in_member_order(app: offload.App) -> None:
    add, _ = arithmetic(app)

    @app.task
    async def nap(seconds: float, name: str) -> str:
        await asyncio.sleep(seconds)
        return name

    @app.task
    def exclaim(text: str, mark: str = "!") -> str:
        return text + mark

    @app.task
    def collect(results: list[str], sep: str) -> str:
        return sep.join(results)

    # members end in reverse order; one member is itself a chain
    members = group(nap.s(0.4, "a"), nap.s(0.2, "b"), chain(nap.s(0.0, "c"), exclaim.s()))
    wf = await app.asubmit_workflow(members | collect.s(sep="-"))
    async with running(app):
        assert await wf.aresult(timeout=10) == "a-b-c!"
        fan_out = await app.asubmit_workflow(chain(add.s(1, 1), group(add.s(1), add.s(2))))
        assert await fan_out.aresult(timeout=10) == [3, 4]  # a final group: the list
    assert await wf.astatus() == Status.SUCCEEDED
    steps = await wf.asteps()
    assert all(job is not None and job.status is State.SUCCEEDED for job in steps)
    fan_in = steps[-1]
    assert fan_in is not None
    assert fan_in.record.args == [["a", "b", "c!"]]


async def test_group_then_group_then_fan_in(app: offload.App) -> None:
    add, _ = arithmetic(app)

    @app.task
    def total(xs: list[int]) -> int:
        return sum(xs)

    @app.task
    def pair(xs: list[list[int] | int]) -> list[list[int] | int]:
        return xs

    flow = chain(add.s(1, 1), group(add.s(1), add.s(2)), group(total.s(), total.s()), total.s())
    wf = await app.asubmit_workflow(flow)
    # a group inside a chain inside a group: the inner group's list is one member's result
    nested = group(chain(add.s(1, 1), group(add.s(1), add.s(2))), add.s(5, 5)) | pair.s()
    wf_nested = await app.asubmit_workflow(nested)
    async with running(app):
        assert await wf.aresult(timeout=10) == 14  # 2 -> [3, 4] -> [7, 7] -> 14
        assert await wf_nested.aresult(timeout=10) == [[3, 4], 10]


# -- failure and cancel ---------------------------------------------------------------------------
async def test_a_failing_step_fails_the_workflow_and_nothing_after_it_starts(
    app: offload.App,
) -> None:
    add, _ = arithmetic(app)

    @app.task(retries=1, retry_backoff=0.01)
    def boom(x: int) -> int:
        raise RuntimeError(f"boom at {x}")

    wf = await app.asubmit_workflow(chain(add.s(1, 1), boom.s(), add.s(1)))
    fanned = await app.asubmit_workflow(group(add.s(1, 1), boom.s(7)) | add.s(1))
    async with running(app):
        with pytest.raises(offload.JobFailed, match=r"failed at step 1 \(.*boom\).*boom at 2"):
            await wf.aresult(timeout=10)
        with pytest.raises(offload.JobFailed, match="boom at 7"):
            await fanned.aresult(timeout=10)
        await asyncio.sleep(0.5)  # time enough for a wrongly submitted step to show up
    assert await wf.astatus() == Status.FAILED
    _first, failed, never = await wf.asteps()
    assert failed is not None
    assert failed.status is State.FAILED
    assert failed.attempts == 2
    assert never is None
    *members, fan_in = await fanned.asteps()
    assert [await status_of(m) for m in members] == [State.SUCCEEDED, State.FAILED]
    assert fan_in is None
    assert await fanned.astatus() == Status.FAILED


async def test_a_retried_copy_of_a_failed_step_runs_on_its_own(app: offload.App) -> None:
    add, _ = arithmetic(app)
    calls: list[int] = []

    @app.task
    def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            raise RuntimeError("first time")
        return x

    wf = await app.asubmit_workflow(chain(flaky.s(1), add.s(1)))
    async with running(app):
        with pytest.raises(offload.JobFailed):
            await wf.aresult(timeout=10)
        copy = await app.aretry(wf.id)
        assert await copy.aresult(timeout=10) == 1
        await asyncio.sleep(0.3)
    assert (await wf.asteps())[1] is None  # the workflow does not count a copy: submit it again
    assert await wf.astatus() == Status.FAILED


async def test_cancel_stops_a_running_chain(app: offload.App) -> None:
    add, _ = arithmetic(app)
    started = asyncio.Event()

    @app.task
    async def slow(x: int) -> int:
        started.set()
        await asyncio.sleep(30)
        return x

    wf = await app.asubmit_workflow(chain(add.s(1, 1), slow.s(), add.s(1)))
    async with running(app):
        await asyncio.wait_for(started.wait(), 10)
        assert await wf.astatus() == Status.RUNNING
        await wf.acancel()
        assert await wf.astatus() == Status.CANCELLED
        _, stopped, _ = await wf.asteps()
        assert stopped is not None
        assert (await wait_ended(stopped)).status is State.CANCELLED
        await asyncio.sleep(0.5)
    steps = await wf.asteps()
    assert steps[2] is None  # the next step never started
    with pytest.raises(offload.JobCancelled):
        await wf.aresult(timeout=1)


async def test_a_step_that_ignores_cancel_still_starts_nothing_after_it(
    app: offload.App,
) -> None:
    add, _ = arithmetic(app)
    started = asyncio.Event()

    @app.task
    async def stubborn(x: int) -> int:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return x  # swallows the cancel and succeeds anyway
        return x

    wf = await app.asubmit_workflow(chain(stubborn.s(1), add.s(1)))
    async with running(app):
        await asyncio.wait_for(started.wait(), 10)
        await wf.acancel()
        first = (await wf.asteps())[0]
        assert first is not None
        await wait_ended(first)
        await asyncio.sleep(0.5)
    assert (await wf.asteps())[1] is None
    assert await wf.astatus() == Status.CANCELLED


async def test_cancel_a_pending_workflow_and_a_finished_one(app: offload.App) -> None:
    add, _ = arithmetic(app)
    wf = await app.asubmit_workflow(group(add.s(1, 1), add.s(2, 2)) | add.s(0))
    await wf.acancel()
    await wf.acancel()  # again: no harm
    assert await wf.astatus() == Status.CANCELLED
    assert [await status_of(job) for job in await wf.asteps()] == [
        State.CANCELLED,
        State.CANCELLED,
        None,
    ]
    done = await app.asubmit_workflow(add.s(1, 1))
    async with running(app):
        assert await done.aresult(timeout=10) == 2
        with pytest.raises(offload.InvalidTransition):
            await done.acancel()
        await asyncio.sleep(0.3)
    assert await wf.astatus() == Status.CANCELLED


async def test_status_moves_from_pending_to_running_to_succeeded(app: offload.App) -> None:
    add, _ = arithmetic(app)
    gate = asyncio.Event()
    entered = asyncio.Event()

    @app.task
    async def held(x: int) -> int:
        entered.set()
        await gate.wait()
        return x

    wf = await app.asubmit_workflow(chain(add.s(1, 1), held.s(), add.s(1)))
    seen = [await wf.astatus()]
    async with running(app):
        await asyncio.wait_for(entered.wait(), 10)
        seen.append(await wf.astatus())
        gate.set()
        await wf.aresult(timeout=10)
        seen.append(await wf.astatus())
    assert seen == [Status.PENDING, Status.RUNNING, Status.SUCCEEDED]


async def test_a_workflow_loads_by_id(app: offload.App, tmp_path: Path) -> None:
    add, _ = arithmetic(app)
    wf = await app.asubmit_workflow(chain(add.s(1, 1), add.s(5)))
    async with running(app):
        await wf.aresult(timeout=10)
    in_memory = isinstance(await app.backend(), MemoryBackend)
    other = app if in_memory else offload.App(app.settings.backend)
    try:
        again = await other.aworkflow(wf.id)
        assert again.id == wf.id
        assert await again.astatus() == Status.SUCCEEDED
        assert await again.aresult(timeout=1) == 7
        with pytest.raises(offload.JobNotFound):
            await other.aworkflow("no-such-workflow")
        with pytest.raises(offload.InvalidWorkflow, match=f"step of workflow {wf.id}"):
            await other.aworkflow(f"{wf.id}.1")
        plain = await add.asubmit(1, 2)
        with pytest.raises(offload.InvalidWorkflow, match="not a workflow"):
            await other.aworkflow(plain.id)
    finally:
        if other is not app:
            await other.aclose()


def test_the_sync_faces(tmp_path: Path, fast_settings: Settings) -> None:
    app = offload.App(settings=fast_settings.with_(backend=f"sqlite:///{tmp_path}/jobs.db"))
    add, mul = arithmetic(app)
    worker = offload.Worker(app)
    thread = threading.Thread(target=asyncio.run, args=(worker.run(),))
    thread.start()
    try:
        wf = app.submit_workflow(chain(add.s(2, 3), mul.s()), meta={"request_id": "r-1"})
        assert wf.result(timeout=10) == 10
        assert wf.status() == Status.SUCCEEDED
        assert [job.record.meta["request_id"] for job in wf.steps() if job] == ["r-1", "r-1"]
        assert app.workflow(wf.id).result(timeout=1) == 10
    finally:
        worker.stop()
        thread.join(10)
        app.close()


# -- bad input ------------------------------------------------------------------------------------
async def test_bad_workflows_are_rejected_with_the_bad_value() -> None:
    app = offload.App(MemoryBackend())
    add, _ = arithmetic(app)
    elsewhere = offload.App(MemoryBackend())

    @elsewhere.task
    def stranger(x: int) -> int:
        return x

    @app.task
    def no_input() -> int:
        return 1

    with pytest.raises(offload.InvalidWorkflow, match=r"chain\(\) needs at least one step"):
        chain()
    with pytest.raises(offload.InvalidWorkflow, match=r"group\(\) needs at least one member"):
        group()
    with pytest.raises(
        offload.InvalidWorkflow, match=r"chain step 2 is <Task .*add.*\.s\(\.\.\.\)"
    ):
        chain(add.s(1, 2), add)  # type: ignore[arg-type]
    with pytest.raises(offload.InvalidWorkflow, match="group member 1 is 'add'"):
        group("add")  # type: ignore[arg-type]
    with pytest.raises(offload.InvalidWorkflow, match="chain step 2 is 42"):
        group(add.s(1, 2)) | 42  # type: ignore[operator]
    with pytest.raises(offload.InvalidWorkflow, match="the workflow is None"):
        await app.asubmit_workflow(None)  # type: ignore[arg-type]
    with pytest.raises(offload.TaskNotFound, match="stranger"):
        await app.asubmit_workflow(chain(add.s(1, 2), stranger.s()))
    with pytest.raises(offload.InvalidArguments, match="'y'") as bad:
        await app.asubmit_workflow(chain(add.s(1, 2), add.s("not a number")))
    assert bad.value.argument == "y"
    with pytest.raises(offload.InvalidArguments, match="unexpected keyword argument 'z'"):
        await app.asubmit_workflow(chain(add.s(1, 2), add.s(2, z=1)))
    with pytest.raises(offload.InvalidArguments, match="receives the previous result"):
        await app.asubmit_workflow(chain(add.s(1, 2), no_input.s()))
    with pytest.raises(offload.InvalidArguments, match="missing a required argument: 'y'"):
        await app.asubmit_workflow(group(add.s(1)))  # first steps receive nothing
    with pytest.raises(offload.InvalidWorkflow, match="idempotency_key='k'"):
        await app.asubmit_workflow(add.options(idempotency_key="k").s(1, 2))
    assert await app.ajobs() == []  # nothing was stored


async def test_a_later_steps_arguments_json_cannot_hold_are_refused() -> None:
    # A step after the first was encoded without the check: its Infinity was stored as null.
    app = offload.App(MemoryBackend())

    @app.task
    def take(previous: object, value: object) -> object:
        return value

    deep: object = 1
    for _ in range(100):
        deep = [deep]
    for bad, says in (
        (math.inf, "JSON cannot represent"),
        ([math.nan], "JSON cannot represent"),
        (deep, "nested more than"),
    ):
        with pytest.raises(offload.InvalidArguments, match=says):
            await app.asubmit_workflow(chain(take.s(None, 1), take.s(bad)))
        with pytest.raises(offload.InvalidArguments, match=says):
            await app.asubmit_workflow(chain(take.s(None, 1), take.s(value=bad)))
    assert await app.ajobs() == []


# -- durability: real worker processes, SIGKILLed ------------------------------------------------
TIMINGS = {
    "OFFLOAD_LEASE_SECONDS": "1.5",
    "OFFLOAD_RENEW_INTERVAL": "0.3",
    "OFFLOAD_REAP_INTERVAL": "0.3",
    "OFFLOAD_CANCEL_POLL": "0.1",
    "OFFLOAD_SHUTDOWN_GRACE": "2",
    "OFFLOAD_IDLE_WAIT": "0.2",
}


class Workers:
    """``offload worker workflow_app:app`` processes, each in its own session (killed by pid at
    teardown), and the ledger their tasks write."""

    def __init__(self, tmp_path: Path, url: str) -> None:
        self.tmp = tmp_path
        self.url = url
        self.ledger = tmp_path / "ledger"
        self.ledger.mkdir()
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, **env: str) -> subprocess.Popen[bytes]:
        log = self.tmp / f"worker-{name}.log"
        full = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
        full |= TIMINGS | {"OFFLOAD_BACKEND": self.url, "PYTHONPATH": str(HERE)} | env
        argv = [sys.executable, "-m", "offload", "worker", "workflow_app:app", "--name", name]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                cwd=HERE,
                env=full,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append((proc, log))
        self.wait(lambda: " serving " in log.read_text() or proc.poll() is not None, "start")
        assert " serving " in log.read_text(), log.read_text()
        return proc

    def wait(self, check: Callable[[], object], what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")
            time.sleep(0.02)

    def runs(self) -> Counter[str]:
        return Counter(
            json.loads(line)["tag"]
            for path in self.ledger.glob("*.jsonl")
            for line in path.read_text().splitlines()
            if line.endswith("}")
        )

    def logs(self) -> str:
        return "\n".join(f"--- {log.name} ---\n{log.read_text()}" for _, log in self.procs)

    def cleanup(self) -> None:
        for proc, _ in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait(10)


@pytest.fixture(params=["sqlite", "redis"])
def workers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Workers]:
    url = f"sqlite:///{tmp_path}/jobs.db" if request.param == "sqlite" else redis_namespace_url()
    w = Workers(tmp_path, url)
    try:
        yield w
    finally:
        w.cleanup()


def client(url: str) -> tuple[offload.App, offload.Task[..., int], offload.Task[..., list[int]]]:
    """The test's own App on the workers' tasks, and those tasks."""
    app = workflow_app.build(url)
    return (
        app,
        offload.Task(app, app.registry.get("step")),
        offload.Task(app, app.registry.get("fan")),
    )


def assert_succeeded_once(app: offload.App, wf: offload.Workflow) -> None:
    """Every step's job succeeded, and exactly once (from its recorded history)."""
    for job in wf.steps():
        assert job is not None
        assert job.status is State.SUCCEEDED, job
        wins = [t for t in job.history() if t.to_status is State.SUCCEEDED]
        assert len(wins) == 1, job.history()


@pytest.mark.slow
def test_a_worker_killed_mid_step_resumes_the_chain(workers: Workers) -> None:
    app, step, _ = client(workers.url)
    try:
        ledger = str(workers.ledger)
        wf = app.submit_workflow(
            chain(
                step.s(1, ledger=ledger, tag="a"),
                step.s(ledger=ledger, tag="b", nap_first=60),
                step.s(ledger=ledger, tag="c"),
            )
        )
        first = workers.start("w1")
        workers.wait(lambda: workers.runs()["b"] == 1, "step b to start")
        os.killpg(first.pid, signal.SIGKILL)  # in the middle of step b
        first.wait(10)
        workers.start("w2")
        assert wf.result(timeout=30) == 4
        assert_succeeded_once(app, wf)
        b = wf.steps()[1]
        assert b is not None
        assert Reason.LEASE_EXPIRED in [t.reason for t in b.history()]
        assert workers.runs() == Counter({"a": 1, "b": 2, "c": 1})
    finally:
        app.close()


@pytest.mark.slow
def test_the_next_step_does_not_exist_until_the_last_ones_success_is_recorded(
    workers: Workers,
) -> None:
    """The hand-off is one backend operation: a worker killed after step a's code returned but
    before its outcome was written leaves no step b behind, so b can never run while a may
    still run again; a runs again (at-least-once), then b and c once each."""
    app, step, _ = client(workers.url)
    try:
        ledger = workers.ledger
        wf = app.submit_workflow(
            chain(
                step.s(1, ledger=str(ledger), tag="a"),
                step.s(ledger=str(ledger), tag="b"),
                step.s(ledger=str(ledger), tag="c"),
            )
        )
        first = workers.start("w1", WF_STALL_TAGS="a")
        workers.start("w2")  # claims whatever becomes claimable meanwhile
        workers.wait(lambda: (ledger / "stalled-a").exists(), "step a to end on w1")
        time.sleep(0.5)  # time for w2 to claim a successor, were there one
        assert wf.steps()[1] is None, "step b exists before a's success was recorded"
        assert workers.runs()["b"] == 0
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        assert wf.result(timeout=30) == 4
        assert_succeeded_once(app, wf)
        assert workers.runs() == Counter({"a": 2, "b": 1, "c": 1})
        a, b, _ = wf.steps()
        assert a is not None
        assert b is not None
        a_done = max(t.at for t in a.history() if t.to_status is State.SUCCEEDED)
        b_started = min(t.at for t in b.history() if t.to_status is State.RUNNING)
        assert a_done <= b_started
    finally:
        app.close()


@pytest.mark.slow
def test_crashes_between_a_steps_code_and_recording_its_success(
    workers: Workers,
) -> None:
    """The worst moment to die: a step's code succeeded, nothing of it is recorded yet."""
    app, step, fan = client(workers.url)
    try:
        ledger = str(workers.ledger)
        wf = app.submit_workflow(
            chain(
                step.s(1, ledger=ledger, tag="a"),  # dies before recording its success
                group(
                    step.s(ledger=ledger, tag="m0"), step.s(ledger=ledger, tag="m1", nap_first=0.3)
                ),  # likewise
                fan.s(ledger=ledger, tag="fan"),
            )
        )
        crash = {"WF_CRASH_TAGS": "a,m1"}
        for name in ("w1", "w2"):
            proc = workers.start(name, **crash)
            workers.wait(lambda p=proc: p.poll() is not None, f"{name} to crash")
        workers.start("w3")
        assert wf.result(timeout=30) == [3, 3]
        assert (workers.ledger / "crashed-a").exists()
        assert (workers.ledger / "crashed-m1").exists()
        assert_succeeded_once(app, wf)
        runs = workers.runs()
        assert runs["a"] >= 2, runs  # a crashed run and a successful one
        assert runs["m1"] >= 2, runs
        assert runs["fan"] == 1, runs
        jobs = [job for job in app.jobs(limit=100) if job.id.startswith(wf.id)]
        assert len(jobs) == 6, jobs  # 4 steps and 2 joins: nothing was submitted twice
    finally:
        app.close()
