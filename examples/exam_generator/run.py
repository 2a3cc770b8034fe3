"""Run the exam generator on 127.0.0.1 with two workers; Ctrl-C stops it all.

    python examples/exam_generator/run.py            # the offload version (app.py + 2 workers)
    python examples/exam_generator/run.py --before   # thread per request (before.py), to compare

Two worker processes with 4 slots each (8 in all), and still at most 4 exam commands at once:
the cap is ``exam_step``'s ``concurrency=4``, held by the backend across workers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from launcher import Launcher  # noqa: E402


def environment(data: Path, data_seconds: str) -> dict[str, str]:
    """What the web app and the workers read (tasks.py, steps.py, app.py)."""
    return {
        "OFFLOAD_BACKEND": f"sqlite:///{data / 'offload.db'}",
        "EXAMS_DIR": str(data / "exams"),
        "EXAMS_DB": str(data / "exams.db"),
        "EXAMS_DATA_SECONDS": data_seconds,
        "PYTHONPATH": str(HERE),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="the web app's port (8000)")
    parser.add_argument("--data", type=Path, default=HERE / "data", help="default: ./data here")
    parser.add_argument("--before", action="store_true", help="run before.py, without workers")
    parser.add_argument("--workers", type=int, default=2, help="offload worker processes (2)")
    parser.add_argument("--concurrency", type=int, default=4, help="slots per worker (4)")
    parser.add_argument("--data-seconds", default="1.0", help="seconds make_data.py takes (1)")
    ns = parser.parse_args()
    data = ns.data.resolve()
    data.mkdir(parents=True, exist_ok=True)
    with Launcher(env=environment(data, ns.data_seconds)) as launcher:
        if not ns.before:
            for n in range(1, ns.workers + 1):
                launcher.worker(f"exams-{n}", HERE, concurrency=ns.concurrency)
        launcher.uvicorn(HERE, "before:api" if ns.before else "app:api", ns.port)
        version = "BEFORE (thread per request) version" if ns.before else "offload version"
        launcher.announce(f"exam generator, {version}", f"http://127.0.0.1:{ns.port}", data)
        return launcher.wait()


if __name__ == "__main__":
    sys.exit(main())
