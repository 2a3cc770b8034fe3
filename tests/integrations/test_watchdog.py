"""The event-loop watchdog on a real loop: one warning per block, with the blocking stack."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable

import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from watchdogkit import Records, innermost, monitor_threads

from offload.errors import ConfigurationError
from offload.integrations.watchdog import Watchdog, WatchdogMiddleware, install


def render_invoice_synchronously(seconds: float) -> None:
    """Stands for the blocking call a handler should not make."""
    time.sleep(seconds)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def started(watchdog: Watchdog) -> Watchdog:
    await until(lambda: watchdog._beat > 0)  # the first heartbeat has run
    return watchdog


def naming(log: Records, function: str) -> list[logging.LogRecord]:
    """The records whose innermost frame is ``function``. On a busy machine the OS can stall
    the whole process past the threshold too, and the watchdog rightly reports that as well."""
    return [r for r in log.records if innermost(r).endswith(f" in {function}")]


async def test_a_block_is_logged_once_with_its_stack_and_duration(watchdog_log: Records) -> None:
    registry = CollectorRegistry()
    with install(threshold_ms=100, registry=registry) as watchdog:
        await started(watchdog)
        render_invoice_synchronously(0.3)
        await until(lambda: bool(naming(watchdog_log, "render_invoice_synchronously")))
        await asyncio.sleep(0.2)  # time for a wrong second report
        blocks = registry.get_sample_value("offload_event_loop_blocks_total")
        count = registry.get_sample_value("offload_event_loop_block_seconds_count")
        total = registry.get_sample_value("offload_event_loop_block_seconds_sum")
    [record] = naming(watchdog_log, "render_invoice_synchronously")
    assert watchdog.blocks == blocks == count == len(watchdog_log.records) >= 1
    assert total is not None
    assert total >= 0.3
    assert record.levelname == "WARNING"
    assert record.name == "offload.watchdog"
    assert 0.3 <= vars(record)["blocked_seconds"] < 5
    assert vars(record)["endpoint"] is None
    message = record.getMessage()
    seconds = vars(record)["blocked_seconds"]
    assert message.startswith(f"event loop blocked for {seconds:.3f} s (threshold 0.100 s) ")
    assert "outside any request; blocking stack, most recent call last:\n" in message
    assert "in render_invoice_synchronously\n    time.sleep(seconds)" in message
    assert innermost(record).startswith(__file__)
    assert watchdog.last_block is not None


async def test_each_block_counts(watchdog_log: Records) -> None:
    registry = CollectorRegistry()
    with install(threshold_ms=50, registry=registry) as watchdog:
        await started(watchdog)
        render_invoice_synchronously(0.2)
        await until(lambda: len(naming(watchdog_log, "render_invoice_synchronously")) == 1)
        render_invoice_synchronously(0.2)
        await until(lambda: len(naming(watchdog_log, "render_invoice_synchronously")) == 2)
        counted = registry.get_sample_value("offload_event_loop_blocks_total")
    assert counted == watchdog.blocks == len(watchdog_log.records) >= 2
    for record in naming(watchdog_log, "render_invoice_synchronously"):
        assert vars(record)["blocked_seconds"] >= 0.2


async def test_a_loop_that_only_awaits_is_never_reported(watchdog_log: Records) -> None:
    async def chatty() -> None:
        for _ in range(50):
            await asyncio.sleep(0.01)

    with install(threshold_ms=300, registry=CollectorRegistry()) as watchdog:
        await started(watchdog)
        await asyncio.gather(*(chatty() for _ in range(20)))
        await asyncio.sleep(0.3)
    assert watchdog.blocks == 0
    assert watchdog_log.records == []


async def test_uninstall_stops_the_thread_and_the_heartbeat() -> None:
    watchdog = await started(install(threshold_ms=40, metrics=False))
    assert watchdog.running
    assert monitor_threads() == [watchdog._thread]
    watchdog.uninstall()
    assert not watchdog.running
    assert monitor_threads() == []
    beat = watchdog._beat
    await asyncio.sleep(0.1)
    assert watchdog._beat == beat  # no heartbeat since
    watchdog.uninstall()  # twice is fine


async def test_uninstall_from_another_thread() -> None:
    watchdog = await started(install(threshold_ms=40, metrics=False))
    await asyncio.to_thread(watchdog.uninstall)
    assert not watchdog.running
    beat = watchdog._beat
    await asyncio.sleep(0.1)
    assert watchdog._beat == beat


async def test_metrics_are_optional(monkeypatch: pytest.MonkeyPatch, watchdog_log: Records) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    with install(threshold_ms=50) as watchdog:
        assert watchdog._metrics is None
        await started(watchdog)
        render_invoice_synchronously(0.15)
        await until(lambda: bool(naming(watchdog_log, "render_invoice_synchronously")))


async def test_one_watchdog_per_registry() -> None:
    registry = CollectorRegistry()
    with (
        install(threshold_ms=100, registry=registry),
        pytest.raises(ConfigurationError, match="already registered"),
    ):
        install(threshold_ms=100, registry=registry)
    with install(threshold_ms=100, registry=registry):  # free again after uninstall
        pass


def test_install_needs_a_loop() -> None:
    with pytest.raises(ConfigurationError, match="needs the loop to watch"):
        install()


async def test_threshold_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="threshold_ms must be above 0"):
        install(threshold_ms=0, metrics=False)
    with pytest.raises(ConfigurationError, match="threshold_ms must be above 0, not -5"):
        WatchdogMiddleware(FastAPI(), threshold_ms=-5)


def test_a_closed_loop_cannot_be_watched() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    with pytest.raises(ConfigurationError, match="closed event loop"):
        install(loop, metrics=False)


def test_watching_a_loop_from_outside_it(watchdog_log: Records) -> None:
    loop = asyncio.new_event_loop()
    try:
        watchdog = install(loop, threshold_ms=50, registry=CollectorRegistry())

        async def block() -> None:
            await asyncio.sleep(0.1)
            render_invoice_synchronously(0.2)
            await asyncio.sleep(0.2)

        loop.run_until_complete(block())
        watchdog.uninstall()
    finally:
        loop.close()
    assert len(naming(watchdog_log, "render_invoice_synchronously")) == 1
