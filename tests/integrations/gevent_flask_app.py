"""A Flask app with the offload extension, served by gevent after ``monkey.patch_all()``.

Run as a script by ``test_flask_gevent.py``: ``python gevent_flask_app.py DB_PATH``. Prints
the port it listens on (127.0.0.1), then serves until SIGTERM, and exits 0 once the App is
closed (at interpreter exit, by the extension).
"""

from gevent import monkey

monkey.patch_all()  # first, before anything else is imported

import asyncio  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
from flask import Flask, request  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

import offload  # noqa: E402
from offload.integrations.flask import Offload  # noqa: E402

jobs = offload.App(f"sqlite:///{sys.argv[1]}")


@jobs.task
def render(doc_id: int) -> str:
    return f"doc-{doc_id}.pdf"


web = Flask(__name__)
ext = Offload(web, app=jobs)
hub_lag = {"worst": 0.0}  # the longest the hub went without running a ready greenlet


@web.post("/documents/<int:doc_id>/render")
def render_document(doc_id: int) -> Any:
    return ext.accepted(ext.submit(render, doc_id))


@web.get("/nap")
def nap() -> Any:
    gevent.sleep(float(request.args["seconds"]))
    return {"slept": True}


@web.get("/asyncio")
def uses_asyncio() -> Any:
    """A view that runs its own event loop: offload's loop must not look like it is running
    here (it would if it ran in a greenlet of this thread)."""

    async def answer() -> str:
        await asyncio.sleep(0)
        return "ok"

    return {"answer": asyncio.run(answer())}


@web.get("/lag")
def lag() -> Any:
    return hub_lag


def watch_hub() -> None:
    while True:
        started = time.monotonic()
        gevent.sleep(0.005)
        hub_lag["worst"] = max(hub_lag["worst"], time.monotonic() - started - 0.005)


def main() -> None:
    server = WSGIServer(("127.0.0.1", 0), web, log=None)
    server.start()
    gevent.spawn(watch_hub)
    gevent.signal_handler(signal.SIGTERM, server.stop)
    print(server.server_port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
