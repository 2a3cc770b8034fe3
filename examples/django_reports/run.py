"""Run the Django reports site under gunicorn, with an offload worker; Ctrl-C stops all.

    python examples/django_reports/run.py            # with offload (+ manage.py offload_worker)
    python examples/django_reports/run.py --before   # the report rendered inside the request

Both versions first apply the migrations to the site's SQLite database in ``--data``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from launcher import PYTHON, Launcher  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="the web app's port (8000)")
    parser.add_argument("--data", type=Path, default=HERE / "data", help="default: ./data here")
    parser.add_argument("--before", action="store_true", help="render inline, without workers")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn processes (2)")
    parser.add_argument("--concurrency", type=int, default=2, help="offload worker slots (2)")
    ns = parser.parse_args()
    data = ns.data.resolve()
    data.mkdir(parents=True, exist_ok=True)
    env = {
        "REPORTS_DATA": str(data),
        "REPORTS_BEFORE": "1" if ns.before else "0",
        "DJANGO_SETTINGS_MODULE": "reportsite.settings",
    }
    manage = [PYTHON, str(HERE / "manage.py")]
    with Launcher(env=env) as launcher:
        subprocess.run(
            [*manage, "migrate", "--verbosity", "0"], cwd=HERE, check=True, env=launcher.env
        )
        if not ns.before:
            worker = [
                *manage,
                "offload_worker",
                "--concurrency",
                str(ns.concurrency),
                "--name",
                "reports",
            ]
            launcher.start("worker", worker, cwd=HERE)
        launcher.start(
            "web",
            [
                PYTHON,
                "-m",
                "gunicorn",
                "reportsite.wsgi",
                "-k",
                "gthread",
                "--threads",
                "4",
                "-w",
                str(ns.web_workers),
                "--graceful-timeout",
                "10",
                "--no-control-socket",
                "-b",
                f"127.0.0.1:{ns.port}",
            ],
            cwd=HERE,
            ready=f"http://127.0.0.1:{ns.port}/health",
        )
        version = "BEFORE (inline report) version" if ns.before else "offload version"
        launcher.announce(f"Django reports site, {version}", f"http://127.0.0.1:{ns.port}", data)
        return launcher.wait()


if __name__ == "__main__":
    sys.exit(main())
