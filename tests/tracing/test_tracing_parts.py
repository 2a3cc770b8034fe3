"""Tracing and job metrics piece by piece, in one process: the setting, request context in
ASGI and Flask apps, span events for timeouts, cancels and workflows, and ``/metrics``."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import offload
from offload import job_metrics, tracing
from offload.integrations.flask import Offload
from offload.settings import Settings
from offload.worker.worker import Worker
from upkit import RunningUp

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-offload.json"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
REMOTE_TRACE = 0x0AF7651916CD43DD8448EB211C80319C
REMOTE_SPAN = 0xB7AD6B7169203331


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def test_one_setting_turns_tracing_on() -> None:
    assert Settings().tracing is False
    assert Settings.from_env({"OFFLOAD_TRACING": "1"}).tracing is True
    assert offload.App("memory://", tracing=True).settings.tracing is True
    on = Settings(tracing=True)
    assert offload.App("memory://", settings=on).settings.tracing is True
    assert offload.App("memory://", settings=on, tracing=False).settings.tracing is False


async def test_the_asgi_middleware_continues_the_request_trace(
    spans: InMemorySpanExporter,
) -> None:
    jobs = offload.App("memory://", tracing=True)
    task = jobs.task(name="work")(lambda: None)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await task.asubmit()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    transport = httpx.ASGITransport(app=tracing.TraceContextMiddleware(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        assert (await client.get("/", headers={"traceparent": TRACEPARENT})).status_code == 204
        assert (await client.get("/")).status_code == 204
    continued, fresh = named(spans, "send default")
    assert continued.context.trace_id == REMOTE_TRACE
    assert continued.parent is not None
    assert continued.parent.span_id == REMOTE_SPAN
    assert continued.kind == trace.SpanKind.PRODUCER
    assert fresh.context.trace_id != REMOTE_TRACE
    assert fresh.parent is None
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing left attached
    await jobs.aclose()


def test_flask_views_continue_the_request_trace(spans: InMemorySpanExporter) -> None:
    jobs = offload.App("memory://", tracing=True)
    jobs.task(name="work")(lambda: None)
    flask_app = Flask(__name__)
    ext = Offload(flask_app, app=jobs)

    @flask_app.post("/work")
    def submit() -> Any:
        return ext.accepted(ext.submit("work"))

    with flask_app.test_client() as client:
        r = client.post("/work", headers={"traceparent": TRACEPARENT})
    assert r.status_code == 202
    [send] = named(spans, "send default")
    assert send.parent is not None
    assert send.parent.span_id == REMOTE_SPAN
    assert send.context.trace_id == REMOTE_TRACE
    stored = jobs.get_job(r.get_json()["id"]).record.meta[tracing.TRACE_KEY]
    assert stored["traceparent"].split("-")[1] == f"{REMOTE_TRACE:032x}"
    jobs.close()


@pytest.fixture
async def traced(fast_settings: Settings) -> AsyncIterator[offload.App]:
    app = offload.App("memory://", settings=fast_settings.with_(tracing=True))
    yield app
    await app.aclose()


async def run_until(app: offload.App, job: offload.Job, timeout: float = 10) -> None:
    worker = Worker(app)
    running = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(timeout):
            while not (await job.arefresh()).record.is_terminal:
                await asyncio.sleep(0.02)
    finally:
        worker.stop()
        await running


async def test_a_timeout_and_a_cancel_are_span_events(
    traced: offload.App, spans: InMemorySpanExporter
) -> None:
    @traced.task(timeout=0.1)
    async def slow() -> None:
        await asyncio.sleep(10)

    @traced.task
    async def waits() -> None:
        await asyncio.sleep(10)

    timed_out = await slow.asubmit()
    await run_until(traced, timed_out)
    [span] = named(spans, "process default")
    assert [e.name for e in span.events] == ["timeout", "exception", "failed"]
    assert span.status.status_code == trace.StatusCode.ERROR
    spans.clear()

    cancelled = await waits.asubmit()
    worker = Worker(traced)
    running = asyncio.create_task(worker.run())
    while (await cancelled.arefresh()).status != offload.State.RUNNING:
        await asyncio.sleep(0.02)
    await traced.acancel(cancelled.id)
    while not (await cancelled.arefresh()).record.is_terminal:
        await asyncio.sleep(0.02)
    worker.stop()
    await running
    [span] = named(spans, "process default")
    assert [e.name for e in span.events] == ["cancelled"]
    assert span.attributes is not None
    assert span.attributes["offload.outcome"] == "cancelled"


async def test_a_workflow_is_one_trace(traced: offload.App, spans: InMemorySpanExporter) -> None:
    @traced.task
    async def add(x: int, y: int) -> int:
        return x + y

    flow = await traced.asubmit_workflow(offload.chain(add.s(1, 2), add.s(3)))
    worker = Worker(traced)
    running = asyncio.create_task(worker.run())
    try:
        assert await flow.aresult(timeout=10) == 6
    finally:
        worker.stop()
        await running
    [send] = named(spans, "send workflow")
    steps = named(spans, "process default")
    assert len(steps) == 2
    assert {s.parent.span_id for s in steps if s.parent} == {send.context.span_id}


async def test_job_metrics_on_the_service_metrics(fast_settings: Settings) -> None:
    from offload.service.metrics import Metrics

    app = offload.App("memory://", settings=fast_settings)

    @app.task(retries=1, retry_backoff=0.01, name="flaky", queue="pdf")
    async def flaky() -> None:
        if offload.current().attempt == 1:
            raise RuntimeError("first")

    job = await flaky.asubmit()
    await run_until(app, job)
    text = Metrics().render().decode()
    assert 'offload_job_queue_wait_seconds_count{queue="pdf",task="flaky"} 2.0' in text
    assert 'offload_job_run_seconds_count{outcome="retry",queue="pdf",task="flaky"} 1.0' in text
    assert 'offload_job_run_seconds_count{outcome="succeeded",queue="pdf",task="flaky"}' in text
    assert 'offload_job_retries_total{queue="pdf",task="flaky"} 1.0' in text
    assert 'offload_jobs_in_flight{queue="pdf",task="flaky"} 0.0' in text
    assert "offload_lease_expiries_total" in text
    assert job_metrics.JobMetrics.of() is job_metrics.JobMetrics.of()  # one per registry
    await app.aclose()


async def test_the_grafana_dashboard_uses_only_metrics_that_exist(fast_settings: Settings) -> None:
    import json
    import re

    from offload.core.job import QueueStats
    from offload.core.states import State
    from offload.service.metrics import Metrics

    app = offload.App("memory://", settings=fast_settings)
    noop = app.task(name="dash_noop")(lambda: None)
    await run_until(app, await noop.asubmit())
    metrics = Metrics()
    metrics.observe_request("GET", "/v1/jobs", 200, 0.01)
    metrics.set_queue_stats([QueueStats("default", {State.QUEUED: 1})])
    typed = re.findall(r"^# TYPE (offload_\w+) ", metrics.render().decode(), re.M)
    exported = {re.sub(r"_(bucket|count|sum|total)$", "", name) for name in typed}
    found = re.findall(r"\b(offload_\w+[a-z])\b", json.dumps(json.loads(DASHBOARD.read_text())))
    used = {re.sub(r"_(bucket|count|sum|total)$", "", name) for name in found}
    assert used, "no metric in the dashboard"
    assert used - exported == set()
    await app.aclose()


def test_metrics_port_is_a_port() -> None:
    assert Settings.from_env({"OFFLOAD_METRICS_PORT": "9464"}).metrics_port == 9464
    with pytest.raises(offload.ConfigurationError, match="metrics_port"):
        Settings(metrics_port=70000)


def test_tracing_on_without_opentelemetry_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = offload.App("memory://", tracing=True)
    task = app.task(name="work")(lambda: None)
    tracing._otel.cache_clear()
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if it were not installed
    try:
        with pytest.raises(offload.ConfigurationError, match=r"offload\[otel\]"):
            Worker(app)
        with pytest.raises(offload.ConfigurationError, match=r"offload\[otel\]"):
            task.submit()
    finally:
        monkeypatch.undo()
        tracing._otel.cache_clear()
        app.close()


async def test_a_periodic_tick_is_sent_and_processed_in_one_trace(
    traced: offload.App, spans: InMemorySpanExporter
) -> None:
    from datetime import timedelta

    traced.periodic(every=timedelta(seconds=1), name="tick")(lambda: None)
    worker = Worker(traced)
    running = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(10):
            while not named(spans, "process default"):
                await asyncio.sleep(0.05)
    finally:
        worker.stop()
        await running
    sent = {s.context.span_id: s for s in named(spans, "send default")}
    first = named(spans, "process default")[0]
    assert first.parent is not None
    send = sent[first.parent.span_id]
    assert send.attributes is not None
    assert send.attributes["offload.task.name"] == "tick"


async def test_a_worker_serves_its_job_metrics_on_metrics_port(fast_settings: Settings) -> None:
    from upkit import free_port

    port = free_port()
    app = offload.App("memory://", settings=fast_settings.with_(metrics_port=port))
    noop = app.task(name="served_noop")(lambda: None)
    job = await noop.asubmit()
    worker = Worker(app)
    running = asyncio.create_task(worker.run())
    try:
        while not (await job.arefresh()).record.is_terminal:
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    finally:
        worker.stop()
        await running
    labels = 'outcome="succeeded",queue="default",task="served_noop"'
    assert f"offload_job_run_seconds_count{{{labels}}}" in text
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):  # stopped with the worker
            await client.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
    await app.aclose()


@pytest.mark.slow
def test_offload_up_serves_its_workers_job_metrics(offload_up: RunningUp) -> None:
    with httpx.Client(base_url=offload_up.base, timeout=5) as http:
        created = http.post("/v1/jobs", json={"task": "send_email", "args": ["a@b.c", "hi"]})
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        deadline = time.monotonic() + 30
        while http.get(f"/v1/jobs/{job_id}").json()["status"] != "succeeded":
            assert time.monotonic() < deadline, offload_up.log.read_text()
            time.sleep(0.05)
        text = http.get("/metrics").text
    assert 'offload_job_queue_wait_seconds_count{queue="default",task="send_email"} 1.0' in text
    assert 'offload_jobs_submitted_total{task="send_email"} 1.0' in text
    offload_up.stop()
