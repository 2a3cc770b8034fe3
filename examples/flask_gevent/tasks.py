"""The report job, rate-limited per client: run by ``offload worker tasks:app`` (run.py).

``key_rate_limit="2/s"`` and ``key_concurrency=1`` apply per ``concurrency_key``, which the
web app sets to the client's id: each client starts at most 2 reports a second and runs one at
a time, whichever gunicorn process took the request and whichever worker runs it (the limits
live in the backend). A client that sends 100 requests at once gets 100 jobs accepted; they
start at its pace while other clients' reports start at once.
"""

from __future__ import annotations

import offload
import reports

app = offload.App()  # $OFFLOAD_BACKEND (run.py sets it), else sqlite:///offload.db


@app.task(executor="process", key_rate_limit="2/s", key_concurrency=1, timeout=60)
def build_report(client: str, rows: int) -> reports.Report:
    """CPU-bound, so it runs in the worker's process pool (lower CPU priority than the web)."""
    return reports.build(offload.current().id, client, rows)
