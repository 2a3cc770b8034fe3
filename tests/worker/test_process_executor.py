"""The process executor against real child processes running the tasks in ``proc_app.py``."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import offload
from offload.core.registry import TaskRegistry
from offload.errors import (
    Cancelled,
    ConfigurationError,
    InvalidArguments,
    JobTimeout,
    OffloadError,
    Retry,
    SerializationError,
)
from offload.loader import load_app
from offload.worker.context import JobContext
from offload.worker.executors.base import ChildError, Executor
from offload.worker.executors.process import CHILD_NICE, ProcessExecutor

APP = "proc_app:app"

pytestmark = pytest.mark.asyncio(loop_scope="module")


class Progress:
    """A progress sink that remembers every update and flags the first one."""

    def __init__(self) -> None:
        self.updates: list[tuple[float | None, str | None]] = []
        self.seen = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def __call__(self, fraction: float | None, message: str | None) -> None:
        self.updates.append((fraction, message))
        self._loop.call_soon_threadsafe(self.seen.set)

    async def first_message(self) -> str:
        async with asyncio.timeout(10):
            await self.seen.wait()
        message = self.updates[0][1]
        assert message is not None
        return message


@pytest.fixture(scope="module")
def registry() -> Iterator[TaskRegistry]:
    # Children inherit sys.path, so they find proc_app however pytest imported this module.
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(Path(__file__).parent))
        yield load_app(APP).registry


# One pool for the module: children take ~0.4 s to import offload. Tests that kill children
# check that the pool replaced them, so each test still starts from a full pool.
@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def executor(registry: TaskRegistry) -> AsyncIterator[ProcessExecutor]:
    pool = ProcessExecutor(APP, 2, kill_grace=1.0)
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close()


class Runner:
    """Submits one job to the pool the way the worker does."""

    def __init__(self, pool: ProcessExecutor, registry: TaskRegistry) -> None:
        self.pool, self.registry = pool, registry
        self.progress: Progress | None = None
        self.ctx: JobContext | None = None

    def __call__(
        self, task: str, *args: Any, timeout: float | None = None
    ) -> Coroutine[Any, Any, Any]:
        """Set up the job's context now; the returned coroutine runs it."""
        self.progress = Progress()
        self.ctx = JobContext(
            id=f"job-{task}", task=task, attempt=1, queue="default", _sink=self.progress
        )
        spec = self.registry.get(task)
        return self.pool.run(spec, self.ctx, list(args), {}, timeout)


@pytest.fixture
def run(executor: ProcessExecutor, registry: TaskRegistry) -> Runner:
    return Runner(executor, registry)


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")  # a zombie has stopped running


async def _wait_until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def _assert_pool_serves(pool: ProcessExecutor, run: Runner) -> set[int]:
    """Two jobs at once land on both children, so they prove the whole pool works."""
    both = await asyncio.gather(
        run("next_day", "2024-01-01T00:00:00"), run("next_day", "2024-01-01")
    )
    pids = {result["pid"] for result in both}
    assert pids == set(pool.pids)
    assert len(pids) == 2
    return pids


async def test_fits_the_executor_seam(executor: ProcessExecutor) -> None:
    seam: Executor = executor  # checked by mypy; the worker holds executors as Executor
    assert seam is executor
    assert len(executor.pids) == 2


async def test_result_round_trip_with_typed_arguments(
    executor: ProcessExecutor, run: Runner
) -> None:
    result = await run("next_day", "2024-02-28T12:00:00+00:00", "a")
    assert result["decoded"] == "datetime"
    assert result["next"].startswith("2024-02-29T12:00:00")
    assert result["label"] == "a"
    assert result["pid"] != os.getpid()
    assert result["pid"] in executor.pids


async def test_progress_is_forwarded_to_the_parent(run: Runner) -> None:
    assert await run("report", 3) == "done"
    assert run.progress is not None
    assert run.progress.updates == [(1 / 3, "step 1"), (2 / 3, "step 2"), (1.0, "step 3")]


async def test_task_exception_becomes_child_error(executor: ProcessExecutor, run: Runner) -> None:
    pids = executor.pids
    with pytest.raises(ChildError) as caught:
        await run("fail", "boom")
    assert str(caught.value) == "ValueError: boom"
    assert caught.value.info["type"] == "ValueError"
    assert caught.value.info["message"] == "boom"
    assert "raise ValueError(message)" in caught.value.info["traceback"]
    assert executor.pids == pids  # a task's exception does not cost its child


async def test_bad_arguments_fail_in_the_parent(executor: ProcessExecutor, run: Runner) -> None:
    pids = executor.pids
    with pytest.raises(InvalidArguments, match="when"):
        await run("next_day", "not a date")
    assert executor.pids == pids


async def test_retry_comes_back_as_retry_with_its_delay(run: Runner) -> None:
    with pytest.raises(Retry) as caught:
        await run("retry_later", 7.5)
    assert caught.value.delay == 7.5
    assert caught.value.reason == "not yet"


async def test_cancelled_raised_by_the_task_comes_back_as_cancelled(run: Runner) -> None:
    with pytest.raises(Cancelled, match="the task gave up"):
        await run("give_up")


async def test_non_json_result_raises_serialization_error(run: Runner) -> None:
    with pytest.raises(SerializationError, match="object"):
        await run("not_json")


async def test_timeout_kills_a_busy_child_and_the_pool_replaces_it(
    executor: ProcessExecutor, run: Runner
) -> None:
    before = set(executor.pids)
    job = asyncio.create_task(run("spin", timeout=0.5))
    assert run.progress is not None
    pid = int(await run.progress.first_message())
    with pytest.raises(JobTimeout, match=r"0\.5s timeout; its process was killed"):
        await job
    assert _gone(pid)
    assert pid not in executor.pids
    after = await _assert_pool_serves(executor, run)
    assert len(after - before) == 1  # one fresh child took the killed one's place


async def test_cancelling_the_awaiting_task_kills_the_child(
    executor: ProcessExecutor, run: Runner
) -> None:
    job = asyncio.create_task(run("spin"))
    assert run.progress is not None
    pid = int(await run.progress.first_message())
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert _gone(pid)
    await _assert_pool_serves(executor, run)


async def test_cancel_request_kills_the_child_and_raises_cancelled(
    executor: ProcessExecutor, run: Runner
) -> None:
    job = asyncio.create_task(run("spin"))
    assert run.progress is not None
    assert run.ctx is not None
    ctx = run.ctx
    pid = int(await run.progress.first_message())
    ctx.request_cancel()
    with pytest.raises(Cancelled):
        await job
    assert _gone(pid)
    await _assert_pool_serves(executor, run)


async def test_a_child_that_dies_mid_job_raises_child_died(
    executor: ProcessExecutor, run: Runner
) -> None:
    with pytest.raises(ChildError) as caught:
        await run("exit_now", 3)
    assert caught.value.info["type"] == "ChildDied"
    assert "exited with code 3" in caught.value.info["message"]
    await _assert_pool_serves(executor, run)


async def test_timeout_also_kills_the_jobs_process_groups(run: Runner, tmp_path: Path) -> None:
    pytest.importorskip("offload.worker.subprocess")
    pidfile = tmp_path / "sleep.pid"
    job = asyncio.create_task(run("sleep_in_group", str(pidfile), timeout=1.0))
    await _wait_until(pidfile.exists)
    sleep_pid = int(pidfile.read_text())
    assert not _gone(sleep_pid)
    with pytest.raises(JobTimeout):
        await job
    await _wait_until(lambda: _gone(sleep_pid))


async def test_a_killed_child_takes_its_commands_helpers_with_it(
    executor: ProcessExecutor, run: Runner, tmp_path: Path
) -> None:
    # The helper is not its group's leader: no parent-death signal reaches it, and the child,
    # killed with SIGKILL, cannot stop it; the worker must, from the groups the child reported.
    pidfile = tmp_path / "helper.pid"
    job = asyncio.create_task(run("helper_in_group", str(pidfile)))
    await _wait_until(pidfile.exists)
    child_pid, helper_pid = (int(pid) for pid in pidfile.read_text().split())
    ctx = run.ctx
    assert ctx is not None
    await _wait_until(lambda: bool(ctx.process_groups()))  # the worker learns of the group
    os.kill(child_pid, signal.SIGKILL)
    with pytest.raises(ChildError, match="ChildDied"):
        await job
    await _wait_until(lambda: _gone(helper_pid), within=2.0)
    assert ctx.process_groups() == []
    await _assert_pool_serves(executor, run)


async def test_never_more_jobs_at_once_than_children(
    executor: ProcessExecutor, run: Runner, tmp_path: Path
) -> None:
    spans = await asyncio.gather(*(run("meet", str(tmp_path), 0.2) for _ in range(4)))
    assert {int(pid) for pid, _, _ in spans} <= set(executor.pids)
    edges = sorted([(start, 1) for _, start, _ in spans] + [(end, -1) for _, _, end in spans])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak == 2


async def test_children_run_at_a_lower_cpu_priority(executor: ProcessExecutor) -> None:
    assert executor.nice == CHILD_NICE == 10
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    for pid in executor.pids:
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(mine + CHILD_NICE, 19)


async def test_nice_zero_keeps_the_workers_priority(registry: TaskRegistry) -> None:
    pool = ProcessExecutor(APP, 1, nice=0)
    await pool.start()
    try:
        [pid] = pool.pids
        assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, 0)
        assert await Runner(pool, registry)("report", 1) == "done"
    finally:
        await pool.close()


@pytest.mark.parametrize("nice", [-1, 20])
async def test_nice_beyond_the_range_is_refused(nice: int) -> None:
    with pytest.raises(ValueError, match="nice must be between 0"):
        ProcessExecutor(APP, 1, nice=nice)


async def test_children_ignore_sigint(executor: ProcessExecutor, run: Runner) -> None:
    before = set(executor.pids)
    for pid in before:
        os.kill(pid, signal.SIGINT)
    assert await _assert_pool_serves(executor, run) == before


async def test_close_stops_every_child_and_refuses_new_jobs(registry: TaskRegistry) -> None:
    pool = ProcessExecutor(APP, 2)
    await pool.start()
    try:
        run = Runner(pool, registry)
        assert await run("report", 1) == "done"
        pids = pool.pids
        await pool.close()
        assert all(_gone(pid) for pid in pids)
        assert pool.pids == []
        with pytest.raises(OffloadError, match="closed"):
            await run("report", 1)
    finally:
        await pool.close()  # a no-op once closed


async def test_an_app_the_children_cannot_load_fails_start(registry: TaskRegistry) -> None:
    pool = ProcessExecutor("proc_app:missing", 1, start_method="spawn")
    with pytest.raises(ConfigurationError, match="no attribute 'missing'"):
        await pool.start()
    assert pool.pids == []


DIES_LOADING = """
import multiprocessing, os, pathlib, time  # noqa: E401
import offload
app = offload.App("memory://")
if multiprocessing.parent_process() is not None:  # a process child, loading the app
    pathlib.Path(MARK).touch()
    time.sleep(0.3)
    os._exit(255)  # as a child that got the group's stop signal while loading


@app.task(executor="process")
def square(x: int) -> int:
    return x * x
"""


async def test_a_stop_while_children_load_the_app_is_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop signal sent to the whole group (systemd, Ctrl-C) also ends the children while
    they load the app: the worker stops quietly instead of raising "cannot load app"."""
    mark = tmp_path / "loading"
    (tmp_path / "dies_loading.py").write_text(f"MARK = {str(mark)!r}\n" + DIES_LOADING)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    app = load_app("dies_loading:app")
    worker = offload.Worker(app, app_path="dies_loading:app", concurrency=1)
    running = asyncio.create_task(worker.run())
    deadline = time.monotonic() + 30
    while not mark.exists():
        assert time.monotonic() < deadline, "no child started loading the app"
        await asyncio.sleep(0.02)
    worker.stop()
    await asyncio.wait_for(running, 30)  # returns, does not raise
    assert not worker.serving
