"""CPU per no-op job with tracing off, on with the OpenTelemetry API only, and on with the SDK.

Run from the repository root::

    .venv/bin/python benchmarks/tracing_overhead.py --jobs 5000 --runs 5 --out docs/benchmarks.md

Each run is a fresh process (a tracer provider can be set only once per process) on a fresh
SQLite file in the temp folder. It prepares and submits ``--jobs`` no-op jobs (1,000 per
``asubmit_many``), then drains them with an in-process Worker, and reports the process's CPU
time (every thread: the event loop and SQLite's writer) per job for each half:

- ``bare``: tracing off and the worker's job metrics off (``job_metrics=False``): what a
  no-op job cost before tracing and job metrics existed;
- ``off``: the default (``tracing=False``): opentelemetry is never imported;
- ``api``: ``tracing=True`` with opentelemetry-api alone (no SDK: every span is a no-op);
- ``sdk``: ``tracing=True`` with the SDK's TracerProvider and a BatchSpanProcessor around an
  exporter that drops the spans (the cost of recording spans, not of shipping them).

Modes are interleaved run by run so that a change in the machine's load hits them alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from benchreport import command_line, write_section

if TYPE_CHECKING:
    import offload
    from offload.core.job import JobRecord
    from offload.core.task import TaskSpec

MODES = ("bare", "off", "api", "sdk")
BULK = 1_000
MICRO = 20_000  # calls of the hooks alone, timed in a loop


def install_sdk() -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Drop(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop(), max_queue_size=MICRO * 2))
    trace.set_tracer_provider(provider)


async def one_run(mode: str, jobs: int, folder: str) -> dict[str, float]:
    import offload
    from offload.client import SubmitOptions
    from offload.worker.worker import Worker

    if mode == "sdk":
        install_sdk()
    settings = offload.Settings.from_env().with_(job_metrics=mode != "bare")
    app = offload.App(
        f"sqlite:///{folder}/jobs.db", settings=settings, tracing=mode not in ("bare", "off")
    )

    @app.task(name="noop")
    async def noop() -> None:
        return None

    await app.backend()
    cpu = time.process_time()
    for start in range(0, jobs, BULK):
        batch = [
            app.prepare(noop.spec, (), {}, SubmitOptions()) for _ in range(min(BULK, jobs - start))
        ]
        await app.asubmit_many(batch)
    submit_cpu = time.process_time() - cpu
    worker = Worker(app)
    cpu = time.process_time()
    running = asyncio.create_task(worker.run())
    while worker.processed < jobs:
        await asyncio.sleep(0.01)
    worker_cpu = time.process_time() - cpu
    worker.stop()
    await running
    record = (await app.ajobs(limit=1))[0].record
    await app.aclose()
    loaded = any(name.startswith("opentelemetry") for name in sys.modules)
    return {
        "submit_us": submit_cpu / jobs * 1e6,
        "worker_us": worker_cpu / jobs * 1e6,
        "otel_loaded": float(loaded),
        **micro(app, noop.spec, record),
    }


def micro(app: offload.App, spec: TaskSpec, record: JobRecord) -> dict[str, float]:
    """CPU per call of the two places tracing and job metrics hook into, timed alone: a
    submit's ``App.prepare`` and the worker's observer around one attempt."""
    from offload.client import SubmitOptions
    from offload.worker.observe import Observer

    options = SubmitOptions()
    cpu = time.process_time()
    for _ in range(MICRO):
        app.prepare(spec, (), {}, options)
    prepare_us = (time.process_time() - cpu) / MICRO * 1e6
    observer = Observer(app.settings, "bench-worker")
    cpu = time.process_time()
    for _ in range(MICRO):
        watch = observer.start(record)
        watch.executed()
        watch.end("succeeded")
    observe_us = (time.process_time() - cpu) / MICRO * 1e6
    return {"prepare_us": prepare_us, "observe_us": observe_us}


def child(mode: str, jobs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="offload-tracing-bench-") as folder:
        print(json.dumps(asyncio.run(one_run(mode, jobs, folder))))


def run_child(mode: str, jobs: int) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "OFFLOAD_TRACING"}
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--jobs", str(jobs)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):,.1f} ({min(values):,.1f} to {max(values):,.1f})"


def report(results: dict[str, list[dict[str, float]]], jobs: int, runs: int, took: float) -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        f"Measured with `benchmarks/tracing_overhead.py` on {datetime.now(UTC):%Y-%m-%d} in "
        f"{took:.0f}s.",
        "",
        f"- CPU: {os.cpu_count()} cores; Python {platform.python_version()}; "
        f"load average at the end: {load} (a shared machine: mind the ranges)",
        f"- {jobs:,} no-op async jobs per run, a fresh SQLite file (synchronous=full); one "
        "in-process worker with default settings; process CPU time (all threads) per job",
        "",
        "Command:",
        "",
        "```",
        command_line(),
        "```",
        "",
        f"Median of {runs} run(s); min to max in brackets.",
        "",
        "| Tracing | prepare + submit [us CPU/job] | worker [us CPU/job] | otel imported |",
        "|---|---|---|---|",
    ]
    names = {
        "bare": "off, job metrics off (as before tracing)",
        "off": "off (default)",
        "api": "on, API only (no SDK)",
        "sdk": "on, SDK + batch processor",
    }
    for mode in MODES:
        rows = results[mode]
        loaded = "yes" if rows[0]["otel_loaded"] else "no"
        lines.append(
            f"| {names[mode]} | {summary([r['submit_us'] for r in rows])} | "
            f"{summary([r['worker_us'] for r in rows])} | {loaded} |"
        )
    lines += [
        "",
        f"The hooks alone, {MICRO:,} calls in a loop (steadier than the end-to-end figures "
        "on a shared machine):",
        "",
        "| Tracing | `App.prepare` [us CPU/call] | worker's observer, one attempt [us CPU] |",
        "|---|---|---|",
    ]
    for mode in MODES:
        rows = results[mode]
        lines.append(
            f"| {names[mode]} | {summary([r['prepare_us'] for r in rows])} | "
            f"{summary([r['observe_us'] for r in rows])} |"
        )
    base = statistics.median(r["submit_us"] + r["worker_us"] for r in results["bare"])
    lines.append("")
    for mode in ("off", "api", "sdk"):
        total = statistics.median(r["submit_us"] + r["worker_us"] for r in results[mode])
        share = (total - base) / base
        lines.append(
            f"- {names[mode]}: {total - base:+,.1f} us of CPU per job in all "
            f"({share:+.0%} of the {base:,.1f} us with neither)."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.jobs)
        return
    began = time.monotonic()
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for run in range(args.runs):
        for mode in MODES:
            results[mode].append(run_child(mode, args.jobs))
            print(f"run {run + 1} {mode}: {results[mode][-1]}", file=sys.stderr)
    text = report(results, args.jobs, args.runs, time.monotonic() - began)
    print(text)
    if args.out:
        write_section(args.out, "Tracing overhead", text)


if __name__ == "__main__":
    main()
