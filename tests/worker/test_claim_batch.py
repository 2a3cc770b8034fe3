"""How many jobs one claim carries at most: the backend's own by default, or
``OFFLOAD_CLAIM_BATCH``; and a drain of short jobs claims in batches that large."""

from __future__ import annotations

import asyncio

import pytest

import offload
from offload.errors import ConfigurationError
from offload.settings import Settings


def test_by_default_a_claim_carries_the_backends_own_batch(app: offload.App) -> None:
    worker = offload.Worker(app, concurrency=4)
    expected = 128 if worker.backend.url.startswith("postgres") else 32
    assert worker.claim_batch == expected


def test_a_set_claim_batch_wins_over_the_backends(app: offload.App) -> None:
    settings = app.settings.with_(claim_batch=5)
    assert offload.Worker(app, concurrency=4, settings=settings).claim_batch == 5


@pytest.mark.parametrize("value", [0, -2])
def test_a_claim_batch_below_one_other_than_minus_one_is_refused(value: int) -> None:
    with pytest.raises(ConfigurationError, match="claim_batch"):
        Settings(claim_batch=value)


async def test_claims_of_short_jobs_never_exceed_the_batch(app: offload.App) -> None:
    @app.task(name="quick")
    async def quick() -> None:
        await asyncio.sleep(0)

    handles = [await quick.asubmit() for _ in range(60)]
    worker = offload.Worker(app, concurrency=2, settings=app.settings.with_(claim_batch=7))
    sizes: list[int] = []
    claim = worker.backend.claim

    async def counting(*args: object, **kwargs: object) -> list[offload.JobRecord]:
        jobs = await claim(*args, **kwargs)  # type: ignore[arg-type]
        sizes.append(len(jobs))
        return jobs

    worker.backend.claim = counting  # type: ignore[method-assign]
    task = asyncio.create_task(worker.run())
    try:
        for handle in handles:
            await handle.aresult(timeout=20)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
    assert sum(sizes) == 60
    assert max(sizes) == 7  # short jobs: the worker held more than its 2 slots, 7 at a time
