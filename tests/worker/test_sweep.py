"""The start-up sweep: groups recorded by a worker that is gone are killed, nothing else is."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from offload.worker.sweep import GroupRecord, start_time, sweep

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.fixture
def commands() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Long ``sleep`` commands, each the leader of its own group (as ``run_process`` starts
    them); whatever a test leaves alive is killed afterwards."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()


def command(started: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    started.append(proc)
    return proc


def gone_worker_record(folder: Path, lines: list[str]) -> Path:
    """The record file of a worker that is no longer running: this pid, another start time."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{os.getpid()}.{(start_time(os.getpid()) or 0) + 1}"
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def test_a_gone_workers_live_groups_are_killed_and_its_record_deleted(
    tmp_path: Path, commands: list[subprocess.Popen[bytes]]
) -> None:
    live, reaped = command(commands), command(commands)
    record = gone_worker_record(
        tmp_path,
        [
            f"+{live.pid} {start_time(live.pid)}",
            f"+{reaped.pid} {start_time(reaped.pid)}",
            f"-{reaped.pid}",  # its worker reaped it: not on record any more
            "+12",  # a line cut short by the worker's death
        ],
    )
    assert sweep(tmp_path) == 1
    assert live.wait(5) == -9
    assert reaped.poll() is None
    assert not record.exists()


def test_a_reused_id_is_never_killed(
    tmp_path: Path, commands: list[subprocess.Popen[bytes]]
) -> None:
    """The group's id now names a process that started at another time: someone else's."""
    other = command(commands)
    gone_worker_record(tmp_path, [f"+{other.pid} {(start_time(other.pid) or 0) - 1}"])
    assert sweep(tmp_path) == 0
    assert other.poll() is None


def test_a_running_workers_record_is_left_alone(
    tmp_path: Path, commands: list[subprocess.Popen[bytes]]
) -> None:
    """This process is a running worker: its record (and its commands) stay."""
    mine = command(commands)
    record = GroupRecord(tmp_path)
    record.add(mine.pid)
    assert sweep(tmp_path) == 0
    assert mine.poll() is None
    record.close()  # a clean stop deletes the record
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("shared", ["writable by others", "a symlink"])
def test_a_folder_others_can_write_to_is_not_trusted(
    tmp_path: Path, commands: list[subprocess.Popen[bytes]], shared: str
) -> None:
    """Records in a folder that another user could have written (a shared /tmp) are never
    replayed: they could name any process of ours. Nor is a record kept there."""
    mine = command(commands)
    real = tmp_path / "real"
    gone_worker_record(real, [f"+{mine.pid} {start_time(mine.pid)}"])
    folder = real
    if shared == "a symlink":
        folder = tmp_path / "link"
        folder.symlink_to(real)
    else:
        real.chmod(0o777)
    with pytest.raises(PermissionError, match=str(folder)):
        sweep(folder)
    with pytest.raises(PermissionError, match=str(folder)):
        GroupRecord(folder)
    assert mine.poll() is None


def test_a_long_lived_workers_record_stays_small(
    tmp_path: Path, commands: list[subprocess.Popen[bytes]]
) -> None:
    """Every command adds two lines; a worker that runs commands for weeks must not fill /tmp
    (often memory) with them: the record is rewritten with only the live groups now and then."""
    mine = command(commands)
    record = GroupRecord(tmp_path)
    record.add(mine.pid)
    for pgid in range(100_000, 150_000):  # ids of commands started and reaped since
        record.add(pgid)
        record.remove(pgid)
    assert record.path.stat().st_size < 100_000
    live: dict[str, str] = {}
    for line in record.path.read_text().splitlines():
        group, _, started = line[1:].partition(" ")
        if line.startswith("+"):
            live[group] = started
        else:
            live.pop(group, None)
    assert live == {str(mine.pid): str(start_time(mine.pid))}
    record.close()
    assert list(tmp_path.iterdir()) == []
