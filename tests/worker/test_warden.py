"""The warden process: it kills the command groups still listed once the worker is gone."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from offload.worker import context
from offload.worker.context import JobContext
from offload.worker.subprocess import run_process, run_process_sync
from offload.worker.warden import Warden


@pytest.fixture
def leader() -> Iterator[subprocess.Popen[bytes]]:
    """A long command, the leader of its own group (as ``run_process`` starts them)."""
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def test_a_killed_warden_is_replaced_and_told_the_live_groups(
    leader: subprocess.Popen[bytes],
) -> None:
    warden = Warden()
    warden.start()
    try:
        warden.watch(leader.pid)
        first = warden.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)  # the OOM killer, say
        deadline = time.monotonic() + 5
        while warden.pid == first:
            assert time.monotonic() < deadline, "no new warden"
            time.sleep(0.02)
    finally:
        warden.close()  # its end of input, as when the worker dies
    assert leader.wait(5) == -signal.SIGKILL


class _NotYetRegistered:
    """A worker that dies after its command started but before it registered the group."""

    def __init__(self, warden: Warden) -> None:
        self.warden = warden

    def watch(self, pgid: int) -> None:
        pass

    def unwatch(self, pgid: int) -> None:
        pass

    def announce_fd(self) -> int | None:
        return self.warden.announce_fd()


@pytest.mark.parametrize("face", ["async", "sync"])
async def test_a_command_announces_its_own_group_before_it_runs(tmp_path: Path, face: str) -> None:
    """The command writes its group to the warden between fork and exec, so a worker killed
    before it registered the group still takes the command's helpers with it."""
    warden = Warden()
    warden.start()
    pid_file = tmp_path / "helper.pid"
    ctx = JobContext(
        id="j",
        task="t",
        attempt=1,
        queue="q",
        _sink=lambda f, m: None,
        _watcher=_NotYetRegistered(warden),
    )
    argv = ["sh", "-c", 'sleep 60 & echo $! > "$1.tmp" && mv "$1.tmp" "$1"; wait', "sh", pid_file]
    token = context.bind(ctx)
    try:
        if face == "async":
            run = asyncio.ensure_future(run_process(argv, check=False))
        else:
            run = asyncio.ensure_future(asyncio.to_thread(run_process_sync, argv, check=False))
        deadline = time.monotonic() + 10
        while not pid_file.exists():
            assert time.monotonic() < deadline, "the command did not start its helper"
            await asyncio.sleep(0.01)
        helper = int(pid_file.read_text())
        # The worker is gone: its end of the warden's input closes. close() waits for the warden,
        # which waits for every copy of its input to close, the one run_process holds while it
        # spawns included; so, as in the worker, it must not block the event loop.
        await asyncio.to_thread(warden.close)
        await asyncio.wait_for(run, 10)  # the group was killed, so the command ended
    finally:
        context.unbind(token)
        warden.close()
    deadline = time.monotonic() + 5
    while _alive(helper):
        assert time.monotonic() < deadline, "the command's helper outlived the worker"
        await asyncio.sleep(0.01)


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for init to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False
