"""The Flask app with offload, for gunicorn's gevent workers::

    gunicorn -k gevent -w 2 -b 127.0.0.1:8000 web:web     # from this folder (run.py does it)

``POST /reports`` (header ``X-Client-Id``) submits a report job with the client id as its
``concurrency_key`` and answers 202; ``GET /jobs/<id>`` (the extension's blueprint) follows it.
"""

from gevent import monkey

monkey.patch_all()  # first, before anything imports socket, ssl or threading

from typing import Any  # noqa: E402

from flask import Flask, Response, jsonify, request  # noqa: E402

from offload.integrations.flask import Offload  # noqa: E402
from tasks import app as jobs  # noqa: E402
from tasks import build_report  # noqa: E402

web = Flask(__name__)
ext = Offload(web, app=jobs, url_prefix="/jobs")
MAX_ROWS = 1_000_000


@web.get("/health")
def health() -> dict[str, Any]:
    return {"status": "ok", "gevent": monkey.is_module_patched("socket")}


@web.post("/reports")
def create_report() -> Response | tuple[Response, int]:
    client = request.headers.get("X-Client-Id", "").strip()
    if not client or len(client) > 100:
        return jsonify(error="send your client id in the X-Client-Id header"), 400
    body = request.get_json(silent=True) or {}
    rows = body.get("rows", 60_000)
    if not isinstance(rows, int) or not 1 <= rows <= MAX_ROWS:
        return jsonify(error=f"rows must be a whole number from 1 to {MAX_ROWS}"), 422
    job = ext.submit(build_report.options(concurrency_key=client), client, rows)
    return ext.accepted(job)  # 202, Location: /jobs/<id>
