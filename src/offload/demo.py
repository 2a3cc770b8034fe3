"""Bundled demo tasks, one per executor: ``offload worker offload.demo:app``."""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time

import offload

app = offload.App()


@app.task
async def summarize(text: str, steps: int = 5) -> str:
    """An async task (like an LLM call) that reports progress."""
    for i in range(steps):
        await asyncio.sleep(0.2)
        offload.current().progress((i + 1) / steps, f"step {i + 1} of {steps}")
    words = text.split()
    return " ".join(words[:12]) + ("..." if len(words) > 12 else "")


@app.task(retries=3, retry_backoff=0.5)
def send_email(to: str, subject: str, body: str = "") -> dict[str, str]:
    """A blocking task (like smtplib) in the thread executor, retried on failure."""
    if "@" not in to:
        raise ValueError(f"not an e-mail address: {to!r}")
    time.sleep(0.3)
    return {"to": to, "subject": subject, "status": "sent"}


@app.task(executor="process", queue="cpu")
def crunch(rounds: int = 200_000) -> str:
    """A CPU-bound task in the process executor (no GIL contention with the worker)."""
    digest = b"offload"
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


@app.task(queue="pdf", timeout=60)
async def render(title: str) -> str:
    """An external-command pipeline through run_process (killed with its group on cancel)."""
    script = "import sys; print(sys.argv[1].upper()); print('rendered', file=sys.stderr)"
    done = await offload.run_process([sys.executable, "-c", script, title], timeout=30)
    offload.current().progress(1.0, "rendered")
    return done.stdout.strip()
