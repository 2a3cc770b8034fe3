"""Run the roles API on 127.0.0.1 with its worker(s); Ctrl-C stops it all.

    python examples/roles_api/run.py            # the offload version (app.py + a worker)
    python examples/roles_api/run.py --before   # the naive version (before.py), to compare

Creates the demo HR database (``DATA/hr.db``, 100,000 employees) on the first run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import db

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from launcher import Launcher  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="the web app's port (8000)")
    parser.add_argument("--data", type=Path, default=HERE / "data", help="default: ./data here")
    parser.add_argument("--before", action="store_true", help="run before.py, without workers")
    parser.add_argument("--workers", type=int, default=1, help="offload worker processes (1)")
    parser.add_argument("--concurrency", type=int, default=20, help="slots per worker (20)")
    parser.add_argument("--employees", type=int, default=100_000, help="demo database size")
    parser.add_argument("--generation", default="1.0", help="seconds the generation takes (1)")
    ns = parser.parse_args()
    data = ns.data.resolve()
    hr = data / "hr.db"
    if not hr.exists():
        print(f"creating {hr} with {ns.employees} employees...", flush=True)
        db.seed(hr, ns.employees)
    env = {
        "OFFLOAD_BACKEND": f"sqlite:///{data / 'offload.db'}",
        "ROLES_DB": str(hr),
        "ROLES_GENERATION_SECONDS": ns.generation,
        "PYTHONPATH": str(HERE),
    }
    with Launcher(env=env) as launcher:
        if not ns.before:
            for n in range(1, ns.workers + 1):
                launcher.worker(f"roles-{n}", HERE, concurrency=ns.concurrency)
        launcher.uvicorn(HERE, "before:api" if ns.before else "app:api", ns.port)
        version = "BEFORE (naive) version" if ns.before else "offload version"
        launcher.announce(f"roles API, {version}", f"http://127.0.0.1:{ns.port}", data)
        return launcher.wait()


if __name__ == "__main__":
    sys.exit(main())
