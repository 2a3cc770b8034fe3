"""Tasks for the dashboard pages' browser test: ``offload up dash_app:app`` serves them (the
backend comes from ``OFFLOAD_BACKEND``); the test submits to the same backend with
:func:`build`. One periodic task, one task with caps and rate limits, and steps for workflows.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import offload


def build(backend: str | None = None) -> offload.App:
    app = offload.App(backend)

    @app.periodic(every=timedelta(seconds=5), name="heartbeat_report")
    async def heartbeat_report() -> str:
        return "ok"

    @app.periodic(every=timedelta(minutes=5), name="sync_invoices")
    async def sync_invoices() -> None:
        return None

    @app.periodic("0 3 * * *", name="nightly_cleanup")
    async def nightly_cleanup() -> None:
        return None

    @app.task(name="call_llm", queue="llm", concurrency=3, key_concurrency=1, rate_limit="30/m")
    async def call_llm(prompt: str, seconds: float = 60.0) -> str:
        for i in range(10):
            await asyncio.sleep(seconds / 10)
            offload.current().progress((i + 1) / 10, f"token {i + 1}")
        return prompt.upper()

    @app.task(name="fetch_page")
    async def fetch_page(url: str, seconds: float = 0.05) -> int:
        await asyncio.sleep(seconds)
        if "broken" in url:
            raise ValueError(f"cannot fetch {url}")
        return len(url)

    @app.task(name="publish")
    async def publish(*values: Any) -> None:
        raise RuntimeError("the CDN refused the upload")

    @app.task(name="resize_image", queue="media")
    async def resize_image(*sizes: Any) -> int:
        """Sums its sizes; a list (a group's results) counts as its sum."""
        await asyncio.sleep(0.1)
        return sum(sum(s) if isinstance(s, list) else int(s) for s in sizes)

    @app.task(name="wait_forever", queue="media")
    async def wait_forever(*values: int) -> None:
        await asyncio.sleep(3600)

    return app


app = build()
