"""``manage.py offload_worker`` in a real process: the project's views enqueue through the
test client, the worker runs the jobs, the status view reads them back (SQLite and Redis)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import Client, override_settings
from djsite.settings import TASKS_MODULE
from shop import tasks
from tests_django_kit import PROJECT, tasks_setting

import offload
from rediskit import redis_namespace_url


@pytest.fixture(params=["sqlite", "redis"])
def shop_backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    url = f"sqlite:///{tmp_path}/jobs.db" if request.param == "sqlite" else redis_namespace_url()
    monkeypatch.setenv("SHOP_OFFLOAD", url)
    with override_settings(TASKS=tasks_setting(url)):
        yield url


def start_worker(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "manage.py", "offload_worker", *args],
        cwd=PROJECT,
        env={**os.environ, "OFFLOAD_IDLE_WAIT": "0.1"},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def stop(worker: subprocess.Popen[str]) -> tuple[int, str]:
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=20)
    return worker.returncode, output


def live_workers(url: str, wanted: int, seconds: float = 20.0) -> int:
    """How many workers heartbeat on ``url``, once ``wanted`` do (or the time is up)."""

    async def count() -> int:
        return len(await (await app.backend()).workers())

    deadline = time.monotonic() + seconds
    with offload.App(url) as app:
        while (found := app.run_sync(count())) < wanted and time.monotonic() < deadline:
            time.sleep(0.1)
    return found


def poll_status(client: Client, result_id: str, seconds: float = 30.0) -> dict[str, object]:
    deadline = time.monotonic() + seconds
    while True:
        body: dict[str, object] = client.get(f"/results/{result_id}").json()
        if body["status"] in ("SUCCESSFUL", "FAILED") or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_views_enqueue_and_the_worker_command_runs_the_jobs(shop_backend: str) -> None:
    worker = start_worker("--concurrency", "2")
    try:
        client = Client()
        answers = [client.post(f"/orders/{n}/receipt") for n in (7, 8)]
        assert [a.status_code for a in answers] == [202, 202]
        bodies = [poll_status(client, a.json()["id"]) for a in answers]
    finally:
        code, output = stop(worker)
    assert [b["status"] for b in bodies] == ["SUCCESSFUL", "SUCCESSFUL"], output
    assert [b["value"] for b in bodies] == ["receipt 7 sent", "receipt 8 sent"]
    assert code == 0, output


@pytest.mark.parametrize(
    ("alias", "message"),
    [
        (
            "nope",
            "no usable TASKS entry 'nope' (The connection 'nope' doesn't exist.); pass "
            "--alias with one of ['default', 'inline']",
        ),
        (
            "inline",
            "TASKS['inline'] is django_tasks.backends.immediate.ImmediateBackend; "
            "offload serves the tasks of an offload.integrations.django.OffloadBackend only",
        ),
    ],
)
def test_the_worker_command_refuses_an_alias_that_is_not_offload(alias: str, message: str) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", "offload_worker", "--alias", alias],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == f"CommandError: {message}".replace(
        "django_tasks.", TASKS_MODULE + "."
    )


def test_offload_tasks_of_the_same_app_run_on_the_same_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    monkeypatch.setenv("SHOP_OFFLOAD", url)
    monkeypatch.setenv("SHOP_OFFLOAD_APP", "shop.jobs:app")
    from shop import jobs  # first imported here, with this test's backend

    setting = tasks_setting(url)
    setting["default"]["OPTIONS"] = {"app": "shop.jobs:app"}  # type: ignore[index]
    with override_settings(TASKS=setting):
        worker = start_worker()
        try:
            own = jobs.stamp.submit("x")
            django = tasks.add.enqueue(20, 22)
            assert own.result(timeout=30) == "[x]"
            deadline = time.monotonic() + 30
            while not django.is_finished and time.monotonic() < deadline:
                time.sleep(0.05)
                django.refresh()
            assert django.return_value == 42
        finally:
            code, output = stop(worker)
    assert code == 0, output


def test_process_tasks_run_with_django_set_up_in_the_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOP_OFFLOAD", f"sqlite:///{tmp_path}/jobs.db")
    monkeypatch.setenv("SHOP_OFFLOAD_APP", "shop.jobs:app")
    from shop import jobs

    url = jobs.app.settings.backend  # where the module's App was made, if an earlier test did
    monkeypatch.setenv("SHOP_OFFLOAD", url)
    setting = tasks_setting(url)
    setting["default"]["OPTIONS"] = {"app": "shop.jobs:app"}  # type: ignore[index]
    with override_settings(TASKS=setting):
        worker = start_worker()
        try:
            job = jobs.installed_apps.submit()
            assert "shop" in job.result(timeout=30)
        finally:
            code, output = stop(worker)
    assert code == 0, output


def test_several_worker_processes_under_one_command(offload_url: str) -> None:
    worker = start_worker("--processes", "2", "--concurrency", "1")
    try:
        assert live_workers(offload_url, 2) == 2
        results = [tasks.add.enqueue(n, n) for n in range(4)]
        deadline = time.monotonic() + 30
        for result in results:
            while not result.is_finished and time.monotonic() < deadline:
                time.sleep(0.05)
                result.refresh()
    finally:
        code, output = stop(worker)
    assert [r.return_value for r in results] == [0, 2, 4, 6], output
    assert code == 0, output
