"""A real Django project (djproject/) on offload: settings, its own SQLite database, and the
TASKS entry pointed at a fresh offload backend for each test."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests_django_kit import PROJECT, tasks_setting


def _setup_django() -> None:
    """Django, set up once when the tests are collected (their modules import the project's),
    with its database in a temporary folder."""
    sys.path.insert(0, str(PROJECT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "djsite.settings"
    folder = tempfile.mkdtemp(prefix="offload-django-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["SHOP_DB"] = str(Path(folder) / "django.db")
    import django

    django.setup()
    # Read once by set-up; other tests' processes (the examples' sites) must not inherit it.
    del os.environ["DJANGO_SETTINGS_MODULE"]


_setup_django()


@pytest.fixture
def offload_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh offload backend as the project's TASKS backend (and in SHOP_OFFLOAD, which a
    worker process reads)."""
    from django.test import override_settings

    url = f"sqlite:///{tmp_path}/jobs.db"
    monkeypatch.setenv("SHOP_OFFLOAD", url)
    with override_settings(TASKS=tasks_setting(url)):
        yield url
