"""offload in a Flask application, threaded or under gevent.

::

    from flask import Flask

    import offload
    from offload.integrations.flask import Offload

    jobs = offload.App("sqlite:///jobs.db")

    @jobs.task
    def render(doc_id: int) -> str: ...

    web = Flask(__name__)
    ext = Offload(web, app=jobs)     # GET /jobs/<id>, POST /jobs/<id>/cancel, ...

    @web.post("/documents/<int:doc_id>/render")
    def render_document(doc_id: int):
        job = ext.submit(render, doc_id)      # one backend round trip, then it is committed
        return ext.accepted(job)              # 202, Location: /jobs/<id>

Run workers beside it as usual (``offload worker module:jobs``). Submitting is synchronous:
the call runs on the App's private event loop (see ``offload._portal``) and blocks only the
calling thread, or under gevent's ``monkey.patch_all()`` only the calling greenlet.

The blueprint's routes answer with the JSON of ``offload serve`` (the service's wire models)
and its errors in its shape, ``{"error": {"code", "message", "details"}}``. They have no
authentication of their own: they act as the service's anonymous caller (the jobs of tenant
``default``, which is where ``submit`` puts them). Guard them like any blueprint, e.g. with a
``before_request`` on ``ext.blueprint`` added before ``init_app``.

Unless ``Offload(..., error_handlers=False)``, the whole Flask application answers offload's
exceptions in that shape too, from its own views: ``ext.submit`` while the backend is down is
a JSON 503 with ``Retry-After`` (not an HTML 500), ``JobNotFound`` 404, ``InvalidArguments``
and ``TaskNotFound`` 422. ``jobs.ping()`` in a health view is then a readiness check.

Every request gets an id (the client's ``X-Request-ID`` if sane, else a new one), echoed in
the answer's ``X-Request-ID`` and held in ``offload.logs.REQUEST_ID`` while it is served: JSON
log lines carry it, and so do the jobs its views submit (and their worker's log lines).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, g, request, url_for
from pydantic import BaseModel

from offload import tracing
from offload._portal import before_interpreter_exit
from offload.api.auth import ANONYMOUS
from offload.api.errors import TRANSLATED, error_body, translate
from offload.api.schemas import History, JobOut, TransitionOut
from offload.client import App, Task
from offload.core.job import JobRecord
from offload.errors import JobNotFound, OffloadError
from offload.jobs import Job
from offload.logs import REQUEST_ID, request_id_from

__all__ = ["Offload"]

#: Retry-After (seconds) when the backend is unavailable, as ``offload serve`` answers
UNAVAILABLE_RETRY_AFTER = 5


class Offload:
    """The offload extension: job routes under ``url_prefix`` and a fast, synchronous submit.

    ``Offload(flask_app, app=jobs)``, or ``ext = Offload(app=jobs)`` then
    ``ext.init_app(flask_app)`` in an application factory. The App's backend is closed when
    the interpreter exits. With ``error_handlers`` (the default) the Flask application answers
    offload's exceptions from any view as the job routes do (a handler the application has
    for one of them is kept).
    """

    def __init__(
        self,
        flask_app: Flask | None = None,
        *,
        app: App,
        url_prefix: str = "/jobs",
        error_handlers: bool = True,
    ):
        if not url_prefix.startswith("/"):
            raise ValueError(f"url_prefix must start with '/', like '/jobs' (got {url_prefix!r})")
        self.app = app
        self.url_prefix = url_prefix.rstrip("/")
        self.error_handlers = error_handlers
        self.blueprint = self._blueprint()
        self._close_at_exit = False
        if flask_app is not None:
            self.init_app(flask_app)

    def init_app(self, flask_app: Flask) -> None:
        """Register the job routes on ``flask_app`` (``flask_app.extensions["offload"]``)."""
        flask_app.register_blueprint(self.blueprint, url_prefix=self.url_prefix)
        flask_app.extensions["offload"] = self
        flask_app.before_request(_start_request)
        flask_app.after_request(_echo_request_id)
        flask_app.teardown_request(_end_request)
        if self.app.settings.tracing:  # the jobs a request submits join its trace (W3C)
            flask_app.before_request(_continue_trace)
            flask_app.teardown_request(_leave_trace)
        if self.error_handlers:
            _handle_errors(flask_app)
        if not self._close_at_exit:  # before thread pools stop, which closing may need
            before_interpreter_exit(self.app.close)
            self._close_at_exit = True

    # -- submitting ----------------------------------------------------------------------------
    def submit(self, task: Task[..., Any] | str, /, *args: Any, **kwargs: Any) -> Job:
        """Submit ``task`` (a task of this App, or its registered name) with these arguments;
        return once the job is durably stored. Arguments are validated first
        (``offload.InvalidArguments``, ``offload.TaskNotFound``), before anything is stored.
        Raises ``offload.BackendUnavailable`` when the backend cannot be reached (a JSON 503
        with ``Retry-After`` from a view, unless ``error_handlers=False``)."""
        if isinstance(task, str):
            new = self.app.prepare(task, args, kwargs)
            [job] = self.app.submit_many([new])
            return job
        if task.app is not self.app:
            raise ValueError(f"task {task.name!r} belongs to another offload App")
        return task.submit(*args, **kwargs)

    def accepted(self, job: Job) -> Response:
        """202 Accepted with ``job`` as the service shows it and ``Location: <prefix>/<id>``
        (behind the application's root, like every ``url_for``; in a request context)."""
        response = _json(JobOut.of(job.record), 202)
        response.headers["Location"] = url_for(f"{self.blueprint.name}.get_job", job_id=job.id)
        return response

    # -- the job routes ------------------------------------------------------------------------
    def _blueprint(self) -> Blueprint:
        bp = Blueprint("offload", __name__)
        bp.add_url_rule("/<job_id>", "get_job", self._get_job, methods=["GET"])
        bp.add_url_rule("/<job_id>/cancel", "cancel_job", self._cancel_job, methods=["POST"])
        bp.add_url_rule("/<job_id>/retry", "retry_job", self._retry_job, methods=["POST"])
        bp.add_url_rule("/<job_id>/history", "job_history", self._job_history, methods=["GET"])
        bp.register_error_handler(OffloadError, _error_response)
        return bp

    async def _own(self, job_id: str) -> JobRecord:
        """The job, if it is the anonymous caller's (tenant ``default``), as in the service."""
        record = await self.app.aget_record(job_id)
        if record.tenant != ANONYMOUS.tenant:
            raise JobNotFound(job_id)
        return record

    def _get_job(self, job_id: str) -> Response:
        return _json(JobOut.of(self.app.run_sync(self._own(job_id))))

    def _cancel_job(self, job_id: str) -> Response:
        async def cancel() -> JobRecord:
            await self._own(job_id)
            return (await self.app.acancel(job_id)).record

        return _json(JobOut.of(self.app.run_sync(cancel())))

    def _retry_job(self, job_id: str) -> Response:
        async def retry() -> Job:
            await self._own(job_id)
            return await self.app.aretry(job_id)

        return self.accepted(self.app.run_sync(retry()))

    def _job_history(self, job_id: str) -> Response:
        async def history() -> History:
            await self._own(job_id)
            transitions = await (await self.app.backend()).history(job_id)
            return History(job_id=job_id, transitions=[TransitionOut.of(t) for t in transitions])

        return _json(self.app.run_sync(history()))


def _json(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json(), status=status, mimetype="application/json")


def _start_request() -> None:
    g.offload_request_id = request_id_from(request.headers.get("X-Request-ID"))
    g.offload_request_token = REQUEST_ID.set(g.offload_request_id)


def _echo_request_id(response: Response) -> Response:
    if "offload_request_id" in g:  # not when an earlier before_request answered
        response.headers["X-Request-ID"] = g.offload_request_id
    return response


def _end_request(exc: BaseException | None) -> None:
    token = g.pop("offload_request_token", None)
    if token is not None:
        REQUEST_ID.reset(token)


def _continue_trace() -> None:
    headers = {name: request.headers.get(name, "") for name in tracing.HEADERS}
    g.offload_trace = tracing.continue_trace(headers)


def _leave_trace(exc: BaseException | None) -> None:
    tracing.leave(g.pop("offload_trace", None))


def _handle_errors(flask_app: Flask) -> None:
    """Answer offload's exceptions from every view with :func:`_error_response`."""
    known = flask_app.error_handler_spec[None][None]
    for exc_class in TRANSLATED:
        if exc_class not in known:
            flask_app.register_error_handler(exc_class, _error_response)


def _error_response(exc: Exception) -> Response:
    """An offload error in the service's shape and status (``offload.api.errors``)."""
    error = translate(exc, retry_after=UNAVAILABLE_RETRY_AFTER)
    body = error_body(error.code, error.message, error.details)
    return Response(body, status=error.status, headers=error.headers, mimetype="application/json")
