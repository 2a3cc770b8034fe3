"""The lease keeper fences itself in time even when the backend stops answering."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from offload.backends.memory import MemoryBackend
from offload.core.job import Lease, RenewResult, WorkerInfo
from offload.settings import Settings
from offload.worker.lease import LeaseKeeper


class HangingBackend(MemoryBackend):
    """Every call that a keeper makes hangs, as on a locked database or a dead network."""

    async def renew(self, *args: object, **kwargs: object) -> RenewResult:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def reap(self, limit: int = 100) -> int:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


def test_a_lease_that_cannot_be_renewed_is_reported_lost_before_it_expires() -> None:
    lost = threading.Event()
    lost_at: list[float] = []
    settings = Settings(lease_seconds=0.6, cancel_poll=0.05)

    def on_lost(job_id: str) -> None:
        lost_at.append(time.monotonic())
        lost.set()

    keeper = LeaseKeeper(
        HangingBackend(), "w", settings, on_lost=on_lost, on_cancel=lambda job_id: None
    )
    claimed = time.monotonic()
    keeper.track(Lease("job", 1), claimed)
    keeper.start()
    try:
        assert lost.wait(5), "the keeper never fenced the job"
    finally:
        keeper.stop()
    # Fenced before the lease could have expired (plus scheduling slack), despite hung calls.
    assert lost_at[0] - claimed < settings.lease_seconds + 0.3


def test_holds_until_the_lease_or_the_heartbeat_could_have_lapsed() -> None:
    """``holds`` (behind ``offload.current().still_owner()``) is the fencing horizon: a tracked
    lease whose worker heartbeat is fresh; not after dead_after without one, nor untracked."""
    settings = Settings(lease_seconds=30, heartbeat_interval=0.1, dead_after=0.3)
    keeper = LeaseKeeper(
        MemoryBackend(),
        "w",
        settings,
        on_lost=lambda job_id: None,
        on_cancel=lambda job_id: None,
        describe=lambda: pytest.fail("the keeper is not started"),
    )
    keeper.track(Lease("job", 1), time.monotonic())
    assert not keeper.holds("job")
    sent_at = time.monotonic()
    keeper.alive_since(sent_at)
    assert keeper.holds("job")
    assert not keeper.holds("other")
    while time.monotonic() < sent_at + settings.dead_after:
        time.sleep(0.02)  # no heartbeat since: others may now take the worker for dead
    assert not keeper.holds("job")
    keeper.alive_since(time.monotonic())
    keeper.untrack("job")
    assert not keeper.holds("job")


WORKER = WorkerInfo(
    id="w",
    name="w",
    host="h",
    pid=1,
    queues=["default"],
    concurrency=1,
    started_at=0.0,
    last_seen=0.0,
    running=1,
    processed=0,
)


class SilentBackend(MemoryBackend):
    """Renewals work; heartbeats hang, as for a worker the others can no longer hear."""

    async def heartbeat(self, *args: object, **kwargs: object) -> None:
        await asyncio.sleep(3600)


def test_a_worker_that_cannot_heartbeat_stops_its_jobs_before_others_reclaim_them() -> None:
    """Fencing covers the heartbeat: with a 30 s lease that renews fine, a worker whose
    heartbeats do not get through stops its job once others may take it for dead (dead_after),
    long before the lease would end."""
    lost = threading.Event()
    settings = Settings(
        lease_seconds=30,
        renew_interval=0.5,
        heartbeat_interval=0.2,
        dead_after=0.6,
        cancel_poll=0.05,
    )
    keeper = LeaseKeeper(
        SilentBackend(),
        "w",
        settings,
        on_lost=lambda job_id: lost.set(),
        on_cancel=lambda job_id: None,
        describe=lambda: WORKER,
    )
    keeper.alive_since(time.monotonic())  # the worker's first heartbeat, before its claims
    keeper.track(Lease("job", 1), time.monotonic())
    keeper.start()
    try:
        assert lost.wait(10), "the keeper never fenced the job"
    finally:
        keeper.stop()
    assert not keeper.heartbeat_fresh()  # and it claims nothing more until a heartbeat lands
