"""A worker process for the tracing tests: the SDK with an in-memory exporter, then one
Worker of ``tracing_app.app`` until SIGTERM; its finished spans are written as JSON (one
``span.to_json()`` per list item) to ``argv[1]`` as it exits."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tracing_app import app

from offload.worker.worker import Worker


async def main(out: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    worker = Worker(app, concurrency=2)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.stop)
    print("ready", flush=True)
    await worker.run()
    spans = [json.loads(span.to_json()) for span in exporter.get_finished_spans()]
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(spans))
    tmp.rename(out)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
