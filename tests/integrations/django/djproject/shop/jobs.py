"""offload's own tasks in the same project: one App serves them and the Django tasks."""

from __future__ import annotations

import os

import offload

app = offload.App(os.environ.get("SHOP_OFFLOAD"))


@app.task
def stamp(text: str) -> str:
    return f"[{text}]"
