"""How many jobs one claim carries at most: the backend's own by default, or
``OFFLOAD_CLAIM_BATCH`` (a drain's claims are checked in test_prefetch.py)."""

from __future__ import annotations

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
