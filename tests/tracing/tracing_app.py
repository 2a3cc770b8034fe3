"""The App of the tracing tests, loaded by the test and by its worker process
(``tracing_worker.py``). Its backend is ``$TRACING_DB``; tracing is on."""

from __future__ import annotations

import os

from opentelemetry import trace

import offload


def render(doc_id: int) -> str:
    """Fails its first attempt, succeeds on the second; a span of its own inside each."""
    with trace.get_tracer("tracing_app").start_as_current_span("render pages"):
        if offload.current().attempt == 1:
            raise RuntimeError("the LaTeX run crashed")
        return f"doc-{doc_id}.pdf"


def build(url: str) -> offload.App:
    """An App on ``url`` with tracing on and the task above."""
    app = offload.App(url, tracing=True)
    app.task(retries=1, retry_backoff=0.01, name="render")(render)
    return app


app = build(os.environ.get("TRACING_DB", "memory://"))
