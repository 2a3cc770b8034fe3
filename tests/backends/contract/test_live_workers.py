"""The backend contract: live workers.

Runs unchanged against every backend kind in ``tests/backends/conftest.py``; time only
moves through the manual clock. Shared helpers live in ``helpers.py``.
"""

from __future__ import annotations

from offload.backends.base import Backend
from offload.core.clock import ManualClock

from .helpers import (
    worker_info,
)


async def test_heartbeats_list_live_workers_until_they_expire_or_leave(
    backend: Backend, clock: ManualClock
) -> None:
    assert await backend.workers() == []
    await backend.heartbeat(worker_info("a", started_at=1.0), ttl=10)
    await backend.heartbeat(worker_info("b", started_at=2.0), ttl=30)
    clock.advance(5)
    await backend.heartbeat(worker_info("a", started_at=1.0, running=3), ttl=10)
    live = await backend.workers()
    assert [w.id for w in live] == ["a", "b"]
    assert live[0].running == 3
    assert live[0].last_seen == clock.now()
    assert live[0].queues == ["default", "pdf"]
    clock.advance(11)  # a's last heartbeat is 11 s old, b's 16 s of 30
    assert [w.id for w in await backend.workers()] == ["b"]
    await backend.heartbeat(worker_info("b", started_at=2.0), ttl=0)  # a clean stop
    assert await backend.workers() == []
