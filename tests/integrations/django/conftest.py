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

from rediskit import redis_namespace_url


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
    """A fresh SQLite offload backend as the project's TASKS backend (and in SHOP_OFFLOAD,
    which a worker process reads)."""
    yield from _tasks_backend(f"sqlite:///{tmp_path}/jobs.db", monkeypatch)


@pytest.fixture(params=["sqlite", "redis"])
def any_offload_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """``offload_url`` on SQLite, then on a fresh namespace of the test Redis."""
    sqlite = f"sqlite:///{tmp_path}/jobs.db"
    yield from _tasks_backend(
        sqlite if request.param == "sqlite" else redis_namespace_url(), monkeypatch
    )


def _tasks_backend(url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from django.test import override_settings

    monkeypatch.setenv("SHOP_OFFLOAD", url)
    with override_settings(TASKS=tasks_setting(url)):
        yield url
