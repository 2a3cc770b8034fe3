"""offload's own tasks in the same project: one App serves them and the Django tasks."""

from __future__ import annotations

import os

import offload

app = offload.App(os.environ.get("SHOP_OFFLOAD"))


@app.task
def stamp(text: str) -> str:
    return f"[{text}]"


@app.task(executor="process")
def installed_apps() -> list[str]:
    """Runs in a process-pool child: Django must be set up there too."""
    from django.apps import apps

    return sorted(config.label for config in apps.get_app_configs())
