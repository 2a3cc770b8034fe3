"""run_process and run_process_sync against real processes: output, errors, killing whole groups.

Most tests run twice, once per face (the ``run`` fixture); the sync face runs in a thread.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from offload.errors import Cancelled, ProcessError, ProcessTimeout
from offload.worker import context
from offload.worker.context import JobContext
from offload.worker.subprocess import ProcessResult, run_process, run_process_sync

PY = sys.executable
Runner = Callable[..., Awaitable[ProcessResult]]

# A shell that starts a grandchild, reports its pid on stderr, then waits in the foreground.
SPAWN_GRANDCHILD = "sleep 100 & echo $! >&2; sleep 100"
# The same, reporting the pid through a file ($1) written atomically.
SPAWN_GRANDCHILD_TO_FILE = 'sleep 100 & echo $! > "$1.tmp" && mv "$1.tmp" "$1"; sleep 100'


@pytest.fixture(params=["async", "sync"])
def run(request: pytest.FixtureRequest) -> Runner:
    if request.param == "async":
        return run_process

    async def in_thread(argv: Any, **options: Any) -> ProcessResult:
        return await asyncio.to_thread(run_process_sync, argv, **options)

    return in_thread


def make_context() -> JobContext:
    return JobContext(id="j", task="t", attempt=1, queue="q", _sink=lambda f, m: None)


def is_dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A killed orphan stays a zombie until init reaps it; some container inits reap slowly.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_until(condition: Callable[[], object], what: str, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.005)


def assert_dead(*pids: int) -> None:
    for pid in pids:
        wait_until(partial(is_dead, pid), f"process {pid} is dead")


# -- results ---------------------------------------------------------------------------------------
async def test_captures_stdout_and_stderr(run: Runner) -> None:
    code = "import sys; print('out'); print('err', file=sys.stderr)"
    result = await run([Path(PY), "-c", code])
    assert result == ProcessResult([PY, "-c", code], 0, "out\n", "err\n", truncated=False)


async def test_writes_input_to_stdin(run: Runner) -> None:
    code = "import sys; sys.stdout.write(sys.stdin.read().upper())"
    assert (await run([PY, "-c", code], input="héllo")).stdout == "HÉLLO"
    assert (await run([PY, "-c", code], input=b"bytes")).stdout == "BYTES"


async def test_without_input_stdin_is_empty(run: Runner) -> None:
    result = await run([PY, "-c", "import sys; print(repr(sys.stdin.read()))"])
    assert result.stdout == "''\n"


async def test_uses_cwd_and_env(run: Runner, tmp_path: Path) -> None:
    code = "import os, sys; print(os.path.samefile('.', sys.argv[1]), os.environ.get('OFFLOAD_T'))"
    result = await run([PY, "-c", code, tmp_path], cwd=tmp_path, env={"OFFLOAD_T": "yes"})
    assert result.stdout == "True yes\n"


async def test_caps_each_stream_at_max_output(run: Runner) -> None:
    code = "import sys; sys.stdout.write('x' * 5_000_000); sys.stderr.write('y' * 5_000_000)"
    result = await run([PY, "-c", code], max_output=1000)
    assert (result.stdout, result.stderr, result.truncated) == ("x" * 1000, "y" * 1000, True)


async def test_large_input_and_output_together_do_not_deadlock(run: Runner) -> None:
    result = await run(["cat"], input=b"z" * 3_000_000, max_output=10)
    assert (result.stdout, result.truncated) == ("z" * 10, True)


async def test_replaces_invalid_utf8(run: Runner) -> None:
    result = await run([PY, "-c", "import sys; sys.stdout.buffer.write(b'a\\xffb')"])
    assert result.stdout == "a\ufffdb"


# -- failures --------------------------------------------------------------------------------------
async def test_nonzero_exit_raises_process_error(run: Runner) -> None:
    argv = [PY, "-c", "import sys; sys.exit('boom')"]
    with pytest.raises(ProcessError) as caught:
        await run(argv)
    assert (caught.value.argv, caught.value.returncode) == (argv, 1)
    assert "boom" in caught.value.stderr


async def test_check_false_returns_the_failed_result(run: Runner) -> None:
    result = await run([PY, "-c", "import sys; print('partial'); sys.exit(3)"], check=False)
    assert (result.returncode, result.stdout) == (3, "partial\n")


async def test_string_argv_is_rejected(run: Runner) -> None:
    with pytest.raises(TypeError, match="pass a list of arguments; no shell is used"):
        await run("echo hi")
    with pytest.raises(ValueError, match="argv"):
        await run([])


async def test_missing_program_raises_file_not_found(run: Runner) -> None:
    with pytest.raises(FileNotFoundError):
        await run(["/nonexistent/offload-test-program"])


# -- stopping the process group --------------------------------------------------------------------
async def test_timeout_kills_the_group_including_grandchildren(run: Runner) -> None:
    started = time.monotonic()
    with pytest.raises(ProcessTimeout) as caught:
        await run(["sh", "-c", SPAWN_GRANDCHILD], timeout=0.5)
    assert time.monotonic() - started < 5.0  # not the 100 s the command would sleep
    assert (caught.value.timeout, caught.value.returncode) == (0.5, None)
    assert_dead(int(caught.value.stderr))


async def test_sigterm_ignored_escalates_to_sigkill_after_grace(run: Runner) -> None:
    script = f"trap '' TERM; {SPAWN_GRANDCHILD}"
    started = time.monotonic()
    with pytest.raises(ProcessTimeout) as caught:
        await run(["sh", "-c", script], timeout=0.3, kill_grace=0.2)
    assert 0.45 <= time.monotonic() - started < 5.0  # waited out the grace, not the 100 s
    assert_dead(int(caught.value.stderr))


async def test_cancelling_the_task_kills_the_group(tmp_path: Path) -> None:
    ctx, pid_file = make_context(), tmp_path / "pid"
    token = context.bind(ctx)
    try:
        task = asyncio.create_task(
            run_process(["sh", "-c", SPAWN_GRANDCHILD_TO_FILE, "sh", pid_file])
        )
        while not (pid_file.exists() and ctx.process_groups()):
            assert not task.done(), task
            await asyncio.sleep(0.005)
        [group] = ctx.process_groups()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        context.unbind(token)
    assert ctx.process_groups() == []
    assert_dead(group, int(pid_file.read_text()))


def test_sync_cancel_event_kills_the_group(tmp_path: Path) -> None:
    ctx, pid_file = make_context(), tmp_path / "pid"
    raised: list[BaseException] = []

    def job() -> None:
        token = context.bind(ctx)
        try:
            run_process_sync(["sh", "-c", SPAWN_GRANDCHILD_TO_FILE, "sh", pid_file])
        except BaseException as exc:
            raised.append(exc)
        finally:
            context.unbind(token)

    thread = threading.Thread(target=job)
    thread.start()
    wait_until(lambda: pid_file.exists() and ctx.process_groups(), "the command started")
    [group] = ctx.process_groups()
    ctx.request_cancel()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert [type(exc) for exc in raised] == [Cancelled]
    assert ctx.process_groups() == []
    assert_dead(group, int(pid_file.read_text()))


def test_sync_does_not_start_a_command_in_a_cancelled_job(tmp_path: Path) -> None:
    ctx = make_context()
    ctx.request_cancel()
    token = context.bind(ctx)
    try:
        with pytest.raises(Cancelled):
            run_process_sync(["touch", tmp_path / "started"])
    finally:
        context.unbind(token)
    assert not (tmp_path / "started").exists()
