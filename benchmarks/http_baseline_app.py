"""The baseline of ``http_bench.py``: a plain FastAPI app that runs its jobs with BackgroundTasks.

This is what an app without a job system does: the endpoint answers 202 at once and FastAPI
runs the work after the response, in its thread pool, inside the web server's own process.
It accepts the same request as offload's ``POST /v1/jobs`` and runs the same CPU-bound function
as offload's demo task ``crunch``. Nothing is stored: a job that is running when the process
stops is lost, and nothing limits how many run at once beyond the thread pool.

Run it as a user would (``http_bench.py`` does this)::

    uvicorn http_baseline_app:app --port 8001      # from benchmarks/
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import BackgroundTasks, FastAPI, HTTPException
from pydantic import BaseModel, Field

app = FastAPI(title="baseline: FastAPI BackgroundTasks")


def crunch(rounds: int = 200_000) -> str:
    """The body of offload's demo task ``crunch``: CPU-bound hashing."""
    digest = b"offload"
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


TASKS: dict[str, Callable[..., Any]] = {"crunch": crunch}


class SubmitRequest(BaseModel):
    task: str = Field(min_length=1, max_length=200)
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)


class Accepted(BaseModel):
    id: str
    task: str
    status: str


@app.post("/v1/jobs", status_code=202)
async def submit(body: SubmitRequest, background: BackgroundTasks) -> Accepted:
    func = TASKS.get(body.task)
    if func is None:
        raise HTTPException(422, f"unknown task {body.task!r}")
    background.add_task(func, *body.args, **body.kwargs)  # a plain def: runs in the thread pool
    return Accepted(id=uuid.uuid4().hex, task=body.task, status="accepted")


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
