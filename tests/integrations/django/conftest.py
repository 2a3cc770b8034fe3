"""A real Django project (djproject/) on offload: settings, its own SQLite database, and the
TASKS entry pointed at a fresh offload backend for each test."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT = Path(__file__).parent / "djproject"


def _setup_django() -> None:
    """Django, set up once when the tests are collected (their modules import the project's),
    with its database in a temporary folder."""
    sys.path.insert(0, str(PROJECT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "djsite.settings"
    os.environ["SHOP_DB"] = str(Path(tempfile.mkdtemp(prefix="offload-django-")) / "django.db")
    import django

    django.setup()


_setup_django()


def tasks_setting(url: str, **options: object) -> dict[str, object]:
    """The project's TASKS with offload's backend at ``url`` and these OPTIONS."""
    from django.conf import settings

    return {
        "default": {
            "BACKEND": "offload.integrations.django.OffloadBackend",
            "QUEUES": ["default", "reports"],
            "OPTIONS": {"backend": url, **options},
        },
        "inline": settings.TASKS["inline"],
    }


@pytest.fixture
def offload_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh offload backend as the project's TASKS backend (and in SHOP_OFFLOAD, which a
    worker process reads)."""
    from django.test import override_settings

    url = f"sqlite:///{tmp_path}/jobs.db"
    monkeypatch.setenv("SHOP_OFFLOAD", url)
    with override_settings(TASKS=tasks_setting(url)):
        yield url
