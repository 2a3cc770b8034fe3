"""Run the shop (FastAPI on uvicorn) and an offload worker, on PostgreSQL; Ctrl-C stops both.

    python examples/postgres_orders/run.py [--database postgresql://postgres@127.0.0.1/postgres]

The orders live in schema ``--schema`` (default ``shop``), the jobs in ``<schema>_jobs``; the
e-mails are written to ``<data>/outbox``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from launcher import Launcher  # noqa: E402

DEFAULT = os.environ.get("OFFLOAD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="the web app's port (8000)")
    parser.add_argument("--data", type=Path, default=HERE / "data", help="default: ./data here")
    parser.add_argument("--database", default=DEFAULT, help="a postgresql:// URL")
    parser.add_argument("--schema", default="shop", help="the shop's schema (shop)")
    ns = parser.parse_args()
    data = ns.data.resolve()
    data.mkdir(parents=True, exist_ok=True)
    env = {
        "OFFLOAD_BACKEND": f"{ns.database}?schema={ns.schema}_jobs",
        "ORDERS_DATABASE": ns.database.replace("postgresql://", "postgresql+psycopg://", 1),
        "ORDERS_SCHEMA": ns.schema,
        "OUTBOX": str(data / "outbox"),
        "PYTHONPATH": str(HERE),
    }
    with Launcher(env=env) as launcher:
        launcher.worker("mail", HERE, concurrency=4)
        launcher.uvicorn(HERE, "web:api", ns.port)
        launcher.announce(
            "shop (orders + e-mails in one transaction)", f"http://127.0.0.1:{ns.port}", data
        )
        return launcher.wait()


if __name__ == "__main__":
    sys.exit(main())
