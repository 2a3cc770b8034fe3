"""The warden process: it kills the command groups still listed once the worker is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

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
