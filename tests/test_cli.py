"""The CLI, called in-process through ``offload.cli.main``; one real worker run at the end."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from offload.cli import main
from offload.client import App
from offload.console import parse_queues, parse_value
from offload.errors import ConfigurationError

APP_SOURCE = """
import offload
app = offload.App()

@app.task
def add(a: int, b: int = 0) -> int:
    return a + b
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "cliapp.py").write_text(APP_SOURCE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("OFFLOAD_BACKEND", f"sqlite:///{tmp_path}/jobs.db")
    monkeypatch.delitem(sys.modules, "cliapp", raising=False)  # re-read the backend per test
    return tmp_path


def test_submit_status_jobs_cancel(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["submit", "add", "2", "--kw", "b=3", "--app", "cliapp:app", "--json"]) == 0
    job = orjson.loads(capsys.readouterr().out)
    assert (job["status"], job["args"], job["kwargs"]) == ("queued", [2], {"b": 3})

    assert main(["status", job["id"]]) == 0
    out = capsys.readouterr().out
    assert "queued" in out
    assert "submitted" in out  # the history

    assert main(["jobs", "--status", "queued"]) == 0
    assert job["id"] in capsys.readouterr().out

    assert main(["cancel", job["id"]]) == 0
    assert capsys.readouterr().out.strip() == f"{job['id']} cancelled"
    assert main(["jobs", "--json", "--status", "cancelled"]) == 0
    assert [j["id"] for j in orjson.loads(capsys.readouterr().out)] == [job["id"]]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["submit", "nope", "--app", "cliapp:app"], "unknown task 'nope'; known tasks: add"),
        (["submit", "add", "--app", "cliapp:app"], "missing a required argument: 'a'"),
        (["submit", "add", "x", "--app", "cliapp:app"], "argument 'a'"),
        (["submit", "add", "1", "--app", "cliapp:nothing"], "has no attribute 'nothing'"),
        (["submit", "add", "1", "--app", "missing_module:app"], "cannot import module"),
        (["submit", "add", "1", "--app", "cliapp"], "must look like"),
        (["status", "0123"], "no job with id '0123'"),
        (["cancel", "0123"], "no job with id '0123'"),
        (["jobs", "--backend", "sqlite:////no/such/dir/x.db"], "does not exist"),
        (["jobs", "--backend", "ftp://x"], "unsupported backend URL scheme"),
        (["submit", "add", "--kw", "1=2", "--app", "cliapp:app"], "must look like name=value"),
        (["jobs", "--limit", "-5"], "--limit must be at least 1, not -5"),
        (["jobs", "--limit", "0"], "--limit must be at least 1"),
        (["jobs", "--backend", ""], "--backend is empty"),
        (["status", "x", "--backend", " "], "--backend is empty"),
        (["jobs", "--limit", str(10**20)], "limit must be a whole number from 1 to"),
        (["prune", "--batch", str(10**20)], "batch must be a whole number from 1 to"),
        (["worker", "cliapp:app", "--processes", "0"], "--processes must be at least 1, not 0"),
        (["serve", "cliapp:app", "--workers", "-1"], "--workers must be at least 1, not -1"),
        (["worker", "cliapp:app", "--queues", "a b,c"], "queue name 'a b' is invalid"),
    ],
)
def test_errors_are_one_clear_line_and_exit_1(
    project: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with App() as app:  # the project's store exists (read-only commands never create one)
        app.jobs()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("offload: error:")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    "argv",
    [["jobs"], ["status", "0123"], ["cancel", "0123"], ["prune"], ["jobs", "--backend", ""]],
)
def test_read_commands_never_create_a_database(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OFFLOAD_BACKEND", raising=False)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "does not exist" in err or "--backend is empty" in err
    assert list(tmp_path.iterdir()) == []


def test_cancel_of_a_finished_job_says_why(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["submit", "add", "1", "--app", "cliapp:app"])
    job_id = capsys.readouterr().out.split()[0]
    assert main(["cancel", job_id]) == 0
    assert main(["cancel", job_id]) == 1
    assert "is cancelled; it cannot become cancelled" in capsys.readouterr().err


def test_argument_parsing_helpers() -> None:
    assert parse_value("42") == 42
    assert parse_value('"42"') == "42"
    assert parse_value("hello world") == "hello world"
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_queues("pdf:2, default") == {"pdf": 2, "default": None}
    with pytest.raises(ConfigurationError, match="positive whole number"):
        parse_queues("pdf:0")


@pytest.mark.slow
def test_worker_command_runs_jobs_and_stops_on_sigterm(project: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(project), "OFFLOAD_SHUTDOWN_GRACE": "1"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "offload", "worker", "cliapp:app", "--concurrency", "2"],
        cwd=project,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "offload",
                "submit",
                "add",
                "20",
                "22",
                "--app",
                "cliapp:app",
                "--wait",
                "--timeout",
                "20",
                "--json",
            ],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        assert orjson.loads(done.stdout)["result"] == 42
    finally:
        worker.terminate()
        _, err = worker.communicate(timeout=15)
    assert worker.returncode == 0
    assert "received SIGTERM" in err


@dataclass
class Supervised:
    """A real ``offload worker --processes 2`` and the pids of its two worker processes."""

    supervisor: subprocess.Popen[bytes]
    log: Path
    children: list[int]

    def wait_for(self, text: str, count: int = 1, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.log.read_text().count(text) < count:
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.02)


@pytest.fixture
def supervised(project: Path) -> Iterator[Supervised]:
    env = {**os.environ, "PYTHONPATH": str(project), "OFFLOAD_SHUTDOWN_GRACE": "1"}
    log = project / "supervisor.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "offload", "worker", "cliapp:app", "--processes", "2"],
            cwd=project,
            env=env,
            stderr=out,
        )
    running = Supervised(proc, log, [])
    try:
        running.wait_for(" serving ", count=2)
        running.children = [
            int(m) for m in re.findall(r"started worker process (\d+)", log.read_text())
        ]
        yield running
    finally:
        proc.kill()
        proc.wait(5)
        for pid in running.children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_supervised_workers_stop_when_their_supervisor_dies(supervised: Supervised) -> None:
    assert len(supervised.children) == 2
    supervised.supervisor.kill()
    supervised.supervisor.wait(5)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in supervised.children):
        assert time.monotonic() < deadline, "orphaned workers kept running"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_stop_signal_during_a_restart_delay_is_not_lost(supervised: Supervised) -> None:
    os.kill(supervised.children[0], signal.SIGKILL)
    supervised.wait_for("restarting in")
    supervised.supervisor.terminate()  # while it waits to restart the dead worker
    assert supervised.supervisor.wait(10) == 0
    log = supervised.log.read_text()
    assert len(re.findall(r"started worker process", log)) == 2  # no restart
    assert not _alive(supervised.children[1])


FLAKY_SOURCE = """
import offload
app = offload.App()

@app.task(result_ttl=0)
def brittle(n: int) -> int:
    raise ValueError(f"no {n}")

@app.task
def steady(n: int) -> int:
    return n
"""


def test_prune_and_bulk_retry(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    import offload

    (project / "flaky.py").write_text(FLAKY_SOURCE)
    monkeypatch.delitem(sys.modules, "flaky", raising=False)
    from flaky import app  # type: ignore[import-not-found]

    async def run_all() -> None:
        for n in range(3):
            await app.asubmit_name("brittle", [n])
        await app.asubmit_name("steady", [1])
        async with asyncio.timeout(20):
            worker = offload.Worker(app)
            running = asyncio.create_task(worker.run())
            while len(await app.ajobs(status="failed")) < 3:
                await asyncio.sleep(0.05)
            worker.stop()
            await running
        await app.aclose()

    asyncio.run(run_all())

    assert main(["retry", "--app", "flaky:app", "--task", "brittle", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would retry 3 failed job(s)" in out
    assert main(["retry", "--app", "flaky:app", "--task", "brittle", "--json"]) == 0
    retried = orjson.loads(capsys.readouterr().out)
    assert len(retried) == 3
    assert all(r["retry"] and r["task"] == "brittle" for r in retried)
    # Running the same bulk retry again makes no new jobs: each retry happens once.
    assert main(["retry", "--app", "flaky:app", "--task", "brittle", "--json"]) == 0
    again = orjson.loads(capsys.readouterr().out)
    assert {r["retry"] for r in again} == {r["retry"] for r in retried}
    assert main(["jobs", "--json", "--status", "queued"]) == 0
    assert len(orjson.loads(capsys.readouterr().out)) == 3

    # The failed brittle jobs had result_ttl=0: prune removes them, and only them.
    assert main(["prune", "--app", "flaky:app"]) == 0
    assert capsys.readouterr().out.strip() == "pruned 3 expired job(s)"
    assert main(["jobs", "--json", "--limit", "50"]) == 0
    left = orjson.loads(capsys.readouterr().out)
    assert sorted((j["task"], j["status"]) for j in left) == [
        ("brittle", "queued"),
        ("brittle", "queued"),
        ("brittle", "queued"),
        ("steady", "succeeded"),
    ]
    assert main(["prune", "--batch", "0"]) == 1
    assert "--batch must be at least 1" in capsys.readouterr().err
