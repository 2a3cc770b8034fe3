"""OpenTelemetry metrics (offload.otel_metrics) across a real worker, read back through the
SDK's InMemoryMetricReader: the messaging metric names, offload's own, and the setting."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import offload
from offload import otel_metrics
from offload.settings import Settings
from offload.worker.worker import Worker

_READER = InMemoryMetricReader()


@pytest.fixture
def reader() -> InMemoryMetricReader:
    """This process's one metric reader (a meter provider can be set only once)."""
    if not isinstance(metrics.get_meter_provider(), MeterProvider):
        metrics.set_meter_provider(MeterProvider(metric_readers=[_READER]))
    return _READER


def points(reader: InMemoryMetricReader, queue: str) -> dict[str, list[Any]]:
    """Per metric name, its data points on ``queue`` (cumulative since the process began)."""
    found: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    if point.attributes.get("messaging.destination.name") in (queue, None):
                        found.setdefault(metric.name, []).append(point)
    return found


async def _run_until_done(app: offload.App, job: offload.Job) -> None:
    worker = Worker(app)
    running = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(10):
            while not (await job.arefresh()).record.is_terminal:
                await asyncio.sleep(0.02)
    finally:
        worker.stop()
        await running


async def test_job_metrics_as_opentelemetry_messaging_metrics(
    reader: InMemoryMetricReader, fast_settings: Settings
) -> None:
    app = offload.App("memory://", settings=fast_settings.with_(otel_metrics=True))

    @app.task(retries=1, retry_backoff=0.01, name="otel_flaky", queue="otel-q")
    async def flaky() -> None:
        if offload.current().attempt == 1:
            raise RuntimeError("first")

    job = await flaky.asubmit()
    await _run_until_done(app, job)
    await app.aclose()
    found = points(reader, "otel-q")
    [sent] = found["messaging.client.sent.messages"]
    assert sent.value == 1
    assert dict(sent.attributes) == {
        "messaging.system": "offload",
        "messaging.destination.name": "otel-q",
        "offload.task.name": "otel_flaky",
        "messaging.operation.name": "send",
    }
    [consumed] = found["messaging.client.consumed.messages"]
    assert (consumed.value, consumed.attributes["messaging.operation.name"]) == (2, "process")
    durations = {p.attributes["offload.outcome"]: p for p in found["messaging.process.duration"]}
    assert (durations["retry"].count, durations["succeeded"].count) == (1, 1)
    assert durations["retry"].attributes["error.type"] == "retry"
    assert "error.type" not in durations["succeeded"].attributes
    [wait] = found["offload.job.queue_wait.duration"]
    assert wait.count == 2
    assert [p.value for p in found["offload.jobs.in_flight"]] == [0]
    assert [p.value for p in found["offload.job.retries"]] == [1]
    assert "offload.lease.expiries" in found  # observed from the worker's lease keeper


def test_on_with_tracing_or_alone_and_off_by_default() -> None:
    assert Settings().otel_metrics is False
    assert Settings.from_env({"OFFLOAD_OTEL_METRICS": "1"}).otel_metrics is True
    assert otel_metrics.instruments() is otel_metrics.instruments()  # one per process


def test_off_records_nothing(reader: InMemoryMetricReader, fast_settings: Settings) -> None:
    app = offload.App("memory://", settings=fast_settings)
    task = app.task(name="otel_quiet", queue="otel-off")(lambda: None)
    task.submit()
    app.close()
    on_queue = [
        name
        for name, found in points(reader, "otel-off").items()
        if any(p.attributes.get("messaging.destination.name") == "otel-off" for p in found)
    ]
    assert on_queue == []
