"""One trace from an HTTP request to a FastAPI app, through the submit, to two attempts (the
first failing) on a worker in another process; with tracing off, no opentelemetry import."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tracing_app import build

from offload.integrations import fastapi as offload_fastapi

HERE = Path(__file__).resolve().parent

Span = dict[str, Any]
ROUTE = "POST /documents/{doc_id}/render"


def ancestors(span: Span, spans: list[Span]) -> list[str]:
    """The span ids above ``span``, nearest first."""
    parent_of = {s["context"]["span_id"]: s["parent_id"] for s in spans}
    found: list[str] = []
    current = span["parent_id"]
    while current is not None and current not in found:
        found.append(current)
        current = parent_of.get(current)
    return found


def as_json(exporter: InMemorySpanExporter) -> list[Span]:
    return [json.loads(span.to_json()) for span in exporter.get_finished_spans()]


def render_tree(spans: list[Span]) -> str:
    """The spans as an indented tree, parents first, each with its start (from the first
    span's) and duration: what docs/guide/observability.md shows."""
    children: dict[str | None, list[Span]] = {}
    for span in sorted(spans, key=lambda s: s["start_time"]):
        children.setdefault(span["parent_id"], []).append(span)
    known = {s["context"]["span_id"] for s in spans}
    roots = [s for s in spans if s["parent_id"] not in known]
    lines: list[str] = []
    origin = min((_ms(s["start_time"]) for s in spans), default=0.0)

    def walk(span: Span, depth: int) -> None:
        attrs = span["attributes"]
        status = span["status"]["status_code"]
        events = ", ".join(e["name"] for e in span["events"])
        detail = " ".join(
            f"{key}={attrs[key]}"
            for key in ("offload.job.attempt", "offload.outcome")
            if key in attrs
        )
        kind = span["kind"].removeprefix("SpanKind.")
        start, end = _ms(span["start_time"]), _ms(span["end_time"])
        lines.append(
            f"{start - origin:7.1f} ms {end - start:6.1f} ms  "
            f"{'  ' * depth}{span['name']} [{kind}] {status} {detail}"
            + (f" events: {events}" if events else "")
        )
        for child in children.get(span["context"]["span_id"], []):
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return "\n".join(line.rstrip() for line in lines)


def _ms(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp() * 1000


def start_worker(db: Path, out: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "TRACING_DB": f"sqlite:///{db}", "OFFLOAD_IDLE_WAIT": "0.1"}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "tracing_worker.py"), str(out)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def stop_worker(proc: subprocess.Popen[str], out: Path) -> list[Span]:
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=30) == 0
        if proc.stdout is not None:
            proc.stdout.close()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    spans: list[Span] = json.loads(out.read_text())
    return spans


@pytest.mark.slow
async def test_one_trace_from_the_request_to_every_attempt(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    db = tmp_path / "jobs.db"
    jobs = build(f"sqlite:///{db}")
    api = FastAPI()
    offload_fastapi.mount(api, jobs)

    @api.post("/documents/{doc_id}/render")
    async def render_document(doc_id: int, request: Request) -> JSONResponse:
        job = await jobs.asubmit_name("render", [doc_id])
        return offload_fastapi.accepted(job, request)

    proc = start_worker(db, tmp_path / "worker-spans.json")
    try:
        # The caller's span: only its W3C headers reach the app (nothing is current there).
        tracer = trace.get_tracer("test")
        with tracer.start_as_current_span(ROUTE, kind=trace.SpanKind.CLIENT):
            headers: dict[str, str] = {}
            propagate.inject(headers)
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            r = await client.post("/documents/42/render", headers=headers)
        assert r.status_code == 202, r.text
        job = await jobs.aget_job(r.json()["id"])
        assert await job.aresult(timeout=30) == "doc-42.pdf"
    finally:
        worker_spans = stop_worker(proc, tmp_path / "worker-spans.json")
        await jobs.aclose()
    every = as_json(spans) + worker_spans
    tree = render_tree(every)
    (tmp_path / "trace.txt").write_text(tree)
    assert len({s["context"]["trace_id"] for s in every}) == 1, tree
    by_name: dict[str, list[Span]] = {}
    for span in every:
        by_name.setdefault(span["name"], []).append(span)
    [request] = [s for s in by_name[ROUTE] if s["kind"] == "SpanKind.CLIENT"]
    [send] = by_name["send default"]
    first, second = sorted(by_name["process default"], key=lambda s: s["start_time"])
    assert send["kind"] == "SpanKind.PRODUCER"
    # Its parent: the request's span, or (FastAPI >= 0.165) FastAPI's own spans under it.
    assert request["context"]["span_id"] in ancestors(send, every)
    for attempt, span in enumerate((first, second), start=1):
        assert span["kind"] == "SpanKind.CONSUMER"
        assert span["parent_id"] == send["context"]["span_id"]
        attrs = span["attributes"]
        assert attrs["messaging.system"] == "offload"
        assert attrs["messaging.destination.name"] == "default"
        assert attrs["messaging.message.id"] == job.id
        assert attrs["offload.job.attempt"] == attempt
        assert attrs["offload.task.name"] == "render"
        assert attrs["offload.tenant"] == "default"
    assert first["status"]["status_code"] == "ERROR"
    assert [e["name"] for e in first["events"]] == ["exception", "retry"]
    assert first["attributes"]["offload.outcome"] == "retry"
    assert second["status"]["status_code"] == "OK"
    assert [e["name"] for e in second["events"]] == ["succeeded"]
    # The job's own spans are children of its attempt's span (it is current while it runs).
    inner = {s["parent_id"] for s in by_name["render pages"]}
    assert inner == {first["context"]["span_id"], second["context"]["span_id"]}


def test_tracing_off_imports_no_opentelemetry() -> None:
    code = (
        "import sys, offload\n"
        "app = offload.App('memory://')\n"
        "def work(x: int) -> int:\n"
        "    return x\n"
        "job = app.task(work).submit(1)\n"
        "assert job.record.meta == {}, job.record.meta\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry'))\n"
        "print(loaded)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OFFLOAD_TRACING"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
