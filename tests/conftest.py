"""Fixtures shared by every test directory."""

from __future__ import annotations

import pytest

from offload.settings import Settings


@pytest.fixture
def fast_settings(tmp_path: object) -> Settings:
    """Short timings so that lease expiry, reaping and shutdown take moments, not minutes."""
    return Settings(
        lease_seconds=1.5,
        renew_interval=0.3,
        reap_interval=0.3,
        cancel_poll=0.05,
        shutdown_grace=1.0,
        idle_wait=0.2,
        concurrency=4,
    )
