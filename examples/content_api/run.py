"""Run the content API with everything it needs, on 127.0.0.1; Ctrl-C stops it all.

    python examples/content_api/run.py            # the offload version (app.py + a worker)
    python examples/content_api/run.py --before   # the naive version (before.py), to compare

Starts the upstream stand-ins (LLM and image CDN, ``upstream.py``), the SMTP sink
(``smtpsink.py``, messages land in DATA/outbox), the offload worker(s), then the web app on
``--port``. Data (SQLite files, images, e-mails) goes to ``--data``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from launcher import PYTHON, Launcher, free_port  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="the web app's port (8000)")
    parser.add_argument("--data", type=Path, default=HERE / "data", help="default: ./data here")
    parser.add_argument("--before", action="store_true", help="run before.py, without workers")
    parser.add_argument("--workers", type=int, default=1, help="offload worker processes (1)")
    parser.add_argument("--concurrency", type=int, default=20, help="slots per worker (20)")
    parser.add_argument("--llm-delay", default="0.2", help="seconds per LLM call (0.2)")
    ns = parser.parse_args()
    data = ns.data.resolve()
    data.mkdir(parents=True, exist_ok=True)
    upstream, smtp = free_port(), free_port()
    env = {
        "OFFLOAD_BACKEND": f"sqlite:///{data / 'offload.db'}",
        "CONTENT_DATA": str(data),
        "CONTENT_UPSTREAM": f"http://127.0.0.1:{upstream}",
        "CONTENT_SMTP_PORT": str(smtp),
        "PYTHONPATH": str(HERE),
    }
    with Launcher(env=env) as launcher:
        launcher.start(
            "upstream",
            [PYTHON, "upstream.py", "--port", str(upstream), "--llm-delay", ns.llm_delay],
            cwd=HERE,
            ready=f"http://127.0.0.1:{upstream}/health",
        )
        launcher.start(
            "smtp",
            [PYTHON, "smtpsink.py", "--port", str(smtp), "--outbox", str(data / "outbox")],
            cwd=HERE,
            ready=f"tcp://127.0.0.1:{smtp}",
        )
        if not ns.before:
            for n in range(1, ns.workers + 1):
                launcher.worker(f"content-{n}", HERE, concurrency=ns.concurrency)
        launcher.uvicorn(HERE, "before:api" if ns.before else "app:api", ns.port)
        version = "BEFORE (naive) version" if ns.before else "offload version"
        launcher.announce(f"content API, {version}", f"http://127.0.0.1:{ns.port}", data)
        return launcher.wait()


if __name__ == "__main__":
    sys.exit(main())
