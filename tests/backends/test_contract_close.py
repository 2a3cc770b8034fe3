"""``close()`` answers every call in flight, on every backend (issue 23 item 11).

A Redis backend closed while a batch of submits was connecting left its callers waiting forever
(the batch's reply never came): close must answer them, with a result or a BackendError.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from offload.core.clock import ManualClock
from offload.core.ids import new_job_id
from offload.core.job import NewJob
from offload.errors import BackendError

if TYPE_CHECKING:
    from .conftest import BackendFactory

DEADLINE = 10.0  # seconds a caller may wait after close before the test calls it stuck


async def test_close_answers_every_call_in_flight(
    backend_factory: BackendFactory, tmp_path: Path, clock: ManualClock
) -> None:
    # The window in which a close strands a call is a few loop turns wide: close after each
    # number of turns in turn, so that one of them falls inside it.
    for turns in range(30):
        workdir = tmp_path / str(turns)
        workdir.mkdir()
        backend = backend_factory(workdir, clock)
        await backend.open()
        calls = [
            asyncio.create_task(
                backend.submit([NewJob(id=new_job_id(), task="t", args=[], kwargs={})])
            )
            for _ in range(5)
        ]
        for _ in range(turns):
            await asyncio.sleep(0)
        await backend.close()
        done, stuck = await asyncio.wait(calls, timeout=DEADLINE)
        for call in stuck:
            call.cancel()
        assert not stuck, f"{len(stuck)} callers still waiting after a close {turns} turns in"
        for call in done:
            error = call.exception()
            assert error is None or isinstance(error, BackendError), repr(error)
