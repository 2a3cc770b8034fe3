"""Apps served by real uvicorn and gunicorn processes in ``test_host_logging.py``.

``api`` (FastAPI, an embedded worker) and ``web`` (Flask) share the App ``jobs`` on
``$OFFLOAD_BACKEND``. Importing the module configures offload's logging the documented way:
one call, format and level from ``OFFLOAD_LOG_FORMAT`` and ``OFFLOAD_LOG_LEVEL``.
"""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from flask import Flask

import offload
import offload.logs
from offload.integrations import fastapi as offload_fastapi
from offload.integrations.flask import Offload

offload.logs.configure_logging()

jobs = offload.App()


@jobs.task
async def greet(name: str) -> str:
    return f"hello {name}"


api = FastAPI(lifespan=offload_fastapi.lifespan(jobs, worker=True, concurrency=2))
offload_fastapi.mount(api, jobs)


@api.post("/greetings")
async def create_greeting(name: str, request: Request) -> JSONResponse:
    return offload_fastapi.accepted(await greet.asubmit(name), request)


web = Flask(__name__)
ext = Offload(web, app=jobs)


@web.post("/greetings/<name>")
def create_greeting_flask(name: str) -> Any:
    return ext.accepted(ext.submit(greet, name))
