"""Finished-job figures (counts, bytes) per backend, and the warning before Redis fills."""

from __future__ import annotations

import pytest

from offload.backends.base import Backend
from offload.backends.storage import Storage, measure, projected, warning
from offload.core.retention import Retention, RetentionPolicy

from .contract.helpers import MakeJob
from .contract.test_retention import finish_all

MB = 1024 * 1024


async def test_measure_counts_finished_jobs_per_queue_and_their_bytes(
    backend: Backend, make: MakeJob
) -> None:
    await finish_all(backend, [make(), make(), make(queue="other")])
    await finish_all(backend, [make()], "fail")
    await backend.submit([make()])  # queued: not finished
    found = await measure(backend)
    assert found.finished == {"default": 3, "other": 1}
    assert found.total == 4
    if found.kind in ("redis", "sqlite"):
        assert found.bytes_per_job is not None
        assert 100 < found.bytes_per_job < 100_000
        assert found.bytes == int(4 * found.bytes_per_job)
    if found.kind == "redis":
        assert found.maxmemory is not None


def test_the_warning_names_an_unset_maxmemory_and_a_projection_above_half() -> None:
    policy = RetentionPolicy(max_finished=100_000)
    fine = Storage("redis", {"default": 10}, 400.0, 1024 * MB)
    assert warning(fine, policy) is None  # 100,000 x 400 B = 38 MB of 1 GB
    unset = Storage("redis", {"default": 10}, 400.0, 0)
    assert "maxmemory is unset" in (warning(unset, policy) or "")
    small = Storage("redis", {"a": 1, "b": 1}, 400.0, 100 * MB)
    message = warning(small, policy) or ""  # 2 queues x 100,000 x 400 B = 76 MB > 50 MB
    assert "may reach 76 MB" in message
    assert "maxmemory 100 MB" in message
    unbounded = RetentionPolicy(Retention(None, None, None), max_finished=None)
    assert "without bound" in (warning(fine, unbounded) or "")
    assert warning(Storage("sqlite", {"default": 10}, 400.0), policy) is None  # not Redis


def test_the_projection_is_the_smaller_of_rate_times_age_and_the_cap() -> None:
    found = Storage("redis", {"default": 1}, 1000.0, 0)
    week = RetentionPolicy(max_finished=100_000)
    assert projected(found, week, 0.0) == 100_000 * 1000.0
    assert projected(found, week, 0.01) == pytest.approx(0.01 * 7 * 24 * 3600 * 1000.0)
    short = RetentionPolicy(Retention(60, 60, 60), max_finished=None)
    assert projected(found, short, 100.0) == 6000 * 1000.0
