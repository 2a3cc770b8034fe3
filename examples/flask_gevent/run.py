"""Run the Flask app under gunicorn's gevent workers, with an offload worker; Ctrl-C stops all.

    python examples/flask_gevent/run.py            # the offload version (web.py + a worker)
    python examples/flask_gevent/run.py --before   # thread per request (before.py), to compare

Two gunicorn processes (``-k gevent``) submit to the same offload worker(s); the per-client
limits hold across all of them, because they live in the backend.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from launcher import PYTHON, Launcher  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="the web app's port (8000)")
    parser.add_argument("--data", type=Path, default=HERE / "data", help="default: ./data here")
    parser.add_argument("--before", action="store_true", help="run before.py, without workers")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn processes (2)")
    parser.add_argument("--workers", type=int, default=1, help="offload worker processes (1)")
    parser.add_argument("--concurrency", type=int, default=8, help="slots per worker (8)")
    ns = parser.parse_args()
    data = ns.data.resolve()
    data.mkdir(parents=True, exist_ok=True)
    env = {
        "OFFLOAD_BACKEND": f"sqlite:///{data / 'offload.db'}",
        "REPORTS_DIR": str(data / "reports"),
        "PYTHONPATH": str(HERE),
    }
    with Launcher(env=env) as launcher:
        if not ns.before:
            for n in range(1, ns.workers + 1):
                launcher.worker(f"reports-{n}", HERE, concurrency=ns.concurrency)
        launcher.start(
            "web",
            [
                PYTHON,
                "-m",
                "gunicorn",
                "-k",
                "gevent",
                "-w",
                str(ns.web_workers),
                "--worker-connections",
                "1000",
                "--graceful-timeout",
                "10",
                "--no-control-socket",
                "-b",
                f"127.0.0.1:{ns.port}",
                "before:web" if ns.before else "web:web",
            ],
            cwd=HERE,
            ready=f"http://127.0.0.1:{ns.port}/health",
        )
        version = "BEFORE (thread per request) version" if ns.before else "offload version"
        launcher.announce(
            f"Flask app on gunicorn/gevent, {version}", f"http://127.0.0.1:{ns.port}", data
        )
        return launcher.wait()


if __name__ == "__main__":
    sys.exit(main())
