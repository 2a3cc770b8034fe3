"""Fixtures of the watchdog tests: its log records, and no monitor thread left behind."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from watchdogkit import Records, monitor_threads


@pytest.fixture
def watchdog_log() -> Iterator[Records]:
    logger = logging.getLogger("offload.watchdog")
    handler = Records()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.fixture(autouse=True)
def no_monitor_thread_left() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 2
    while monitor_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert monitor_threads() == [], "a test left a watchdog running"
