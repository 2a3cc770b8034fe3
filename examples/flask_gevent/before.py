"""BEFORE: the Flask app with a thread per request and an in-process rate limiter.

    gunicorn -k gevent -w 2 -b 127.0.0.1:8000 before:web   # (run.py --before)

Under gevent a thread is a greenlet in the web worker: the CPU-bound report runs on the same
hub as every request of that gunicorn process, so while reports run, requests wait. The rate
limiter counts in each process's memory, like Flask-Limiter's default storage: with 2 gunicorn
workers a client gets twice its limit, and every restart forgets it. Report statuses live in
the process that took the request: ``GET /reports/<id>`` answers 404 from the other one, and
a restart loses the reports in flight.
"""

from gevent import monkey

monkey.patch_all()

import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import defaultdict, deque  # noqa: E402
from typing import Any  # noqa: E402

from flask import Flask, Response, jsonify, request  # noqa: E402

import reports  # noqa: E402

web = Flask(__name__)
LIMIT, PERIOD = 120, 60.0  # requests per client per minute... per gunicorn process
recent: dict[str, deque[float]] = defaultdict(deque)
statuses: dict[str, dict[str, Any]] = {}


def allowed(client: str) -> bool:
    now = time.monotonic()
    window = recent[client]
    while window and window[0] < now - PERIOD:
        window.popleft()
    if len(window) >= LIMIT:
        return False
    window.append(now)
    return True


def run(report_id: str, client: str, rows: int) -> None:
    statuses[report_id] = {"status": "running"}
    statuses[report_id] = {"status": "succeeded", "result": reports.build(report_id, client, rows)}


@web.get("/health")
def health() -> dict[str, Any]:
    return {"status": "ok", "gevent": monkey.is_module_patched("socket")}


@web.post("/reports")
def create_report() -> tuple[Response, int]:
    client = request.headers.get("X-Client-Id", "").strip()
    if not client:
        return jsonify(error="send your client id in the X-Client-Id header"), 400
    if not allowed(client):
        return jsonify(error="rate limited"), 429
    rows = int((request.get_json(silent=True) or {}).get("rows", 60_000))
    report_id = uuid.uuid4().hex
    threading.Thread(target=run, args=(report_id, client, rows)).start()
    return jsonify(id=report_id, status_url=f"/reports/{report_id}"), 202


@web.get("/reports/<report_id>")
def get_report(report_id: str) -> tuple[Response, int]:
    status = statuses.get(report_id)
    if status is None:
        return jsonify(error=f"no report {report_id} (in this process)"), 404
    return jsonify(status), 200
