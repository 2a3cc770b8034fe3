"""Kill-and-restart run: 100 exams, one worker SIGKILLed mid-way, a new one started.

    python examples/exam_generator/killrun.py [--exams 100] [--kill-after 30] [--data-seconds 1]

One worker (4 slots; the cap is 4 anyway) runs the exams' three-step workflows. Once
``--kill-after`` exams are done it is SIGKILLed, with its 4 commands running, and a new worker
is started at once. The script prints how long everything took, how long after the kill a step
started again, the lost steps ran again and the last exam finished, which of the dead worker's
processes were still alive 2 s after the kill, and how many step runs there were. It uses a
fresh data folder in a temporary directory (``--data`` to choose one).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import offload  # noqa: E402
from launcher import Launcher, descendants  # noqa: E402
from run import environment  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exams", type=int, default=100)
    parser.add_argument("--kill-after", type=int, default=30, help="exams done before the kill")
    parser.add_argument("--data", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--data-seconds", default="1.0", help="seconds make_data.py takes (1)")
    ns = parser.parse_args()
    data = (ns.data or Path(tempfile.mkdtemp(prefix="exams-"))).resolve()
    data.mkdir(parents=True, exist_ok=True)
    env = environment(data, ns.data_seconds)
    os.environ.update(env)  # tasks.py reads its backend and folders when imported
    from tasks import app, exam_workflow

    with open(data / "workers.log", "ab") as log, Launcher(env=env, output=log) as run:
        first = run.worker("exams-1", HERE, concurrency=4)
        began = time.monotonic()
        flows = [
            app.submit_workflow(exam_workflow(uuid.uuid4().hex, "algebra", 10))
            for _ in range(ns.exams)
        ]
        wait_done(flows, ns.kill_after)
        started = descendants(first.pid)
        os.kill(first.pid, signal.SIGKILL)
        killed, killed_at = time.monotonic(), time.time()
        run.worker("exams-2", HERE, concurrency=4)
        time.sleep(max(0.0, killed + 2.0 - time.monotonic()))
        survivors = [pid for pid in started if alive(pid)]
        wait_done(flows, ns.exams)
        ended = time.monotonic()
    steps = app.jobs(task="exam_step", limit=10 * ns.exams)
    lost = [job for job in steps if job.record.losses > 0]
    reruns = [claims(job)[1] - killed_at for job in lost]
    print(f"{ns.exams} exams, one worker killed with kill -9 after {ns.kill_after} were done")
    print(f"  total {ended - began:.1f} s; from the kill to the last exam {ended - killed:.1f} s")
    resumed = min(at for job in steps for at in claims(job) if at > killed_at) - killed_at
    print(f"  first step started after the kill: {resumed:.1f} s")
    print(f"  steps lost with the worker: {len(lost)}; run again {fmt(reruns)} s after the kill")
    print(f"  processes of the dead worker alive 2 s after the kill: {survivors or 'none'}")
    runs = sum(len(claims(job)) for job in steps)
    print(f"  step runs: {runs} for {len(steps)} steps ({3 * ns.exams} expected)")
    outcomes = sorted({f.status().value for f in flows})
    print(f"  workflow outcomes: {outcomes}; data in {data}")
    return 0 if outcomes == [offload.WorkflowStatus.SUCCEEDED.value] else 1


def wait_done(flows: list[offload.Workflow], count: int) -> None:
    while sum(1 for f in flows if f.status().value == "succeeded") < count:
        time.sleep(0.25)


def claims(job: offload.Job) -> list[float]:
    return [t.at for t in job.history() if t.reason.value == "claimed"]


def fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in sorted(values)) or "-"


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


if __name__ == "__main__":
    sys.exit(main())
