"""``offload.integrations.flask``: the extension's blueprint, ``ext.submit``, ``ext.accepted``,
and the synchronous client shared by many threads."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

import offload
from offload.api.schemas import JobOut
from offload.client import SubmitOptions
from offload.core.states import State
from offload.integrations.flask import Offload
from offload.settings import Settings
from upkit import free_port

SETTINGS = Settings(idle_wait=0.05, cancel_poll=0.05)


def make_jobs(url: str) -> tuple[offload.App, offload.Task[[int], str]]:
    jobs = offload.App(url, settings=SETTINGS)

    @jobs.task(name="render")
    def render(doc_id: int) -> str:
        return f"doc-{doc_id}.pdf"

    return jobs, render


@pytest.fixture
def jobs_and_render(tmp_path: Path) -> Iterator[tuple[offload.App, offload.Task[[int], str]]]:
    jobs, render = make_jobs(f"sqlite:///{tmp_path / 'jobs.db'}")
    yield jobs, render
    jobs.close()


@pytest.fixture
def jobs(jobs_and_render: tuple[offload.App, offload.Task[[int], str]]) -> offload.App:
    return jobs_and_render[0]


@pytest.fixture
def render(
    jobs_and_render: tuple[offload.App, offload.Task[[int], str]],
) -> offload.Task[[int], str]:
    return jobs_and_render[1]


@pytest.fixture
def ext(jobs: offload.App) -> Offload:
    return Offload(app=jobs)


@pytest.fixture
def web(ext: Offload, render: offload.Task[[int], str]) -> Flask:
    """A user's Flask app (application-factory style) with the extension."""
    web = Flask(__name__)
    ext.init_app(web)

    @web.post("/documents/<int:doc_id>/render")
    def render_document(doc_id: int) -> Any:
        return ext.accepted(ext.submit(render, doc_id))

    @web.post("/by-name/<int:doc_id>")
    def render_by_name(doc_id: int) -> Any:
        return ext.accepted(ext.submit("render", doc_id))

    return web


@pytest.fixture
def client(web: Flask) -> FlaskClient:
    return web.test_client()


def run_one_job(jobs: offload.App) -> None:
    """Let a worker (on its own loop, in this thread) run what is queued, then stop."""

    async def work() -> None:
        worker = offload.Worker(jobs, concurrency=2)
        running = asyncio.create_task(worker.run())
        while await jobs.ajobs(status=State.QUEUED) or await jobs.ajobs(status=State.RUNNING):
            await asyncio.sleep(0.02)
        worker.stop()
        await running
        await jobs.aclose()

    asyncio.run(work())


# -- submitting --------------------------------------------------------------------------------
def test_submit_a_task_or_a_name_stores_the_job(
    ext: Offload, render: offload.Task[[int], str]
) -> None:
    by_task = ext.submit(render, 1)
    by_name = ext.submit("render", doc_id=2)
    assert by_task.status is State.QUEUED
    stored = {j.id: j.record for j in ext.app.jobs()}
    assert stored[by_task.id].args == [1]
    assert stored[by_name.id].kwargs == {"doc_id": 2}


def test_submit_keeps_the_tasks_options(ext: Offload, render: offload.Task[[int], str]) -> None:
    job = ext.submit(render.options(priority=7, queue="pdf"), 3)
    assert (job.record.priority, job.record.queue) == (7, "pdf")


def test_submit_validates_before_storing(ext: Offload, render: offload.Task[[int], str]) -> None:
    with pytest.raises(offload.InvalidArguments):
        ext.submit(render, "not a number")
    with pytest.raises(offload.TaskNotFound):
        ext.submit("nope")
    _, other_render = make_jobs("memory://")
    with pytest.raises(ValueError, match="another offload App"):
        ext.submit(other_render, 1)
    assert ext.app.jobs() == []


def test_many_threads_submit_at_once_through_one_portal(jobs: offload.App, ext: Offload) -> None:
    before = set(threading.enumerate())
    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(lambda i: ext.submit("render", i).id, range(64)))
    assert len(set(ids)) == 64
    assert len(jobs.jobs(limit=100)) == 64
    portals = [t for t in threading.enumerate() if t not in before and "portal" in t.name]
    assert len(portals) == 1  # racing first calls shared one portal


def test_a_portal_inherited_through_fork_is_replaced(jobs: offload.App, ext: Offload) -> None:
    ext.submit("render", 1)
    inherited = jobs._portal
    assert inherited is not None
    inherited.pid = -1  # as if this process were a child forked after the first call
    try:
        assert len(jobs.jobs()) == 1  # answered by a new portal
        assert jobs._portal is not inherited
    finally:
        inherited.call(jobs.aclose())
        inherited.close()


# -- the blueprint -----------------------------------------------------------------------------
def test_the_view_answers_202_with_the_job_and_its_location(
    client: FlaskClient, jobs: offload.App
) -> None:
    r = client.post("/documents/7/render")
    assert r.status_code == 202
    body = r.get_json()
    assert r.headers["Location"] == f"/jobs/{body['id']}"
    assert body == JobOut.of(jobs.get_job(body["id"]).record).model_dump(mode="json")
    assert client.post("/by-name/8").status_code == 202


def test_locations_are_behind_the_script_root(client: FlaskClient) -> None:
    r = client.post("/documents/7/render", environ_overrides={"SCRIPT_NAME": "/web"})
    assert r.headers["Location"] == f"/web/jobs/{r.get_json()['id']}"


def test_job_routes_read_cancel_retry_and_tell_the_history(client: FlaskClient) -> None:
    job_id = client.post("/documents/1/render").get_json()["id"]
    got = client.get(f"/jobs/{job_id}")
    assert got.status_code == 200
    assert got.get_json()["status"] == "queued"
    assert got.mimetype == "application/json"

    cancelled = client.post(f"/jobs/{job_id}/cancel")
    assert cancelled.get_json()["status"] == "cancelled"

    retried = client.post(f"/jobs/{job_id}/retry")
    assert retried.status_code == 202
    assert retried.get_json()["retry_of"] == job_id
    assert retried.headers["Location"] == f"/jobs/{retried.get_json()['id']}"

    history = client.get(f"/jobs/{job_id}/history").get_json()
    assert history["job_id"] == job_id
    assert [t["to_status"] for t in history["transitions"]] == ["queued", "cancelled"]
    assert history["transitions"][0]["reason"] == "submitted"


def test_a_finished_job_shows_its_result(client: FlaskClient, jobs: offload.App) -> None:
    job_id = client.post("/documents/5/render").get_json()["id"]
    run_one_job(jobs)
    body = client.get(f"/jobs/{job_id}").get_json()
    assert (body["status"], body["result"]) == ("succeeded", "doc-5.pdf")


def test_errors_have_the_service_shape(client: FlaskClient, jobs: offload.App) -> None:
    r = client.get("/jobs/nope")
    assert r.status_code == 404
    assert r.get_json() == {
        "error": {
            "code": "job_not_found",
            "message": "no job with id 'nope'",
            "details": {"job_id": "nope"},
        }
    }
    assert client.post("/jobs/nope/cancel").status_code == 404
    assert client.get("/jobs/nope/history").status_code == 404
    job_id = client.post("/documents/1/render").get_json()["id"]
    client.post(f"/jobs/{job_id}/cancel")
    r = client.post(f"/jobs/{job_id}/cancel")
    assert (r.status_code, r.get_json()["error"]["code"]) == (409, "invalid_transition")
    r = client.post(f"/jobs/{job_id}/history")
    assert r.status_code == 405  # Flask's own answer for what is not a job route


def test_another_tenants_job_is_not_found(client: FlaskClient, jobs: offload.App) -> None:
    theirs = jobs.run_sync(jobs.asubmit_name("render", [1], options=SubmitOptions(tenant="acme")))
    assert client.get(f"/jobs/{theirs.id}").status_code == 404
    assert client.post(f"/jobs/{theirs.id}/cancel").status_code == 404
    assert jobs.get_job(theirs.id).status is State.QUEUED


def test_a_custom_prefix_and_the_constructor_form(jobs: offload.App) -> None:
    web = Flask(__name__)
    ext = Offload(web, app=jobs, url_prefix="/api/jobs/")
    assert web.extensions["offload"] is ext
    job = ext.submit("render", 1)
    with web.test_request_context():
        assert ext.accepted(job).headers["Location"] == f"/api/jobs/{job.id}"
    assert web.test_client().get(f"/api/jobs/{job.id}").status_code == 200
    with pytest.raises(ValueError, match="start with '/'"):
        Offload(app=jobs, url_prefix="jobs")


def test_the_blueprint_can_be_guarded_before_init_app(jobs: offload.App) -> None:
    ext = Offload(app=jobs)

    @ext.blueprint.before_request
    def staff_only() -> Any:
        return ({"error": {"code": "forbidden"}}, 403)

    web = Flask(__name__)
    ext.init_app(web)
    assert web.test_client().get("/jobs/x").status_code == 403


# -- offload's errors in the application's own views -------------------------------------------
def own_views(web: Flask, ext: Offload, render: offload.Task[[int], str]) -> Flask:
    """Views of the user's own that let offload's exceptions escape, and a health route."""

    @web.get("/documents/<job_id>")
    def document(job_id: str) -> Any:
        return {"status": ext.app.get_job(job_id).status.value}

    @web.post("/documents/bad")
    def bad_document() -> Any:
        return ext.accepted(ext.submit(render, "not a number"))

    @web.get("/health/ready")
    def ready() -> Any:
        ext.app.ping()
        return {"status": "ok"}

    return web


def test_offload_errors_in_the_apps_own_views_answer_json(
    web: Flask, ext: Offload, render: offload.Task[[int], str]
) -> None:
    client = own_views(web, ext, render).test_client()
    r = client.get("/documents/nope")
    assert (r.status_code, r.get_json()["error"]["code"]) == (404, "job_not_found")
    r = client.post("/documents/bad")
    assert (r.status_code, r.get_json()["error"]["code"]) == (422, "invalid_arguments")
    assert r.get_json()["error"]["details"] == {"task": "render", "argument": "doc_id"}
    assert client.get("/health/ready").get_json() == {"status": "ok"}


def test_submit_and_ping_while_the_backend_is_down_answer_503_with_retry_after() -> None:
    jobs, render = make_jobs(f"redis://127.0.0.1:{free_port()}/0")  # nobody listens there
    web = Flask(__name__)
    ext = Offload(web, app=jobs)

    @web.post("/documents/<int:doc_id>/render")
    def render_document(doc_id: int) -> Any:
        return ext.accepted(ext.submit(render, doc_id))

    client = own_views(web, ext, render).test_client()
    for r in (client.post("/documents/1/render"), client.get("/health/ready")):
        assert r.status_code == 503
        assert r.headers["Retry-After"] == "5"
        assert r.get_json()["error"]["code"] == "backend_unavailable"
    with pytest.raises(offload.BackendUnavailable):
        jobs.ping()


def test_error_handlers_are_opt_out_and_keep_the_apps_own(
    jobs: offload.App, render: offload.Task[[int], str]
) -> None:
    plain = Flask(__name__)
    ext = Offload(plain, app=jobs, error_handlers=False)
    r = own_views(plain, ext, render).test_client().get("/documents/nope")
    assert r.status_code == 500
    assert r.mimetype == "text/html"  # Flask's own answer, as before

    mine = Flask(__name__)

    @mine.errorhandler(offload.JobNotFound)
    def gone(exc: Exception) -> Any:
        return {"gone": str(exc)}, 410

    ext = Offload(mine, app=jobs)
    r = own_views(mine, ext, render).test_client().get("/documents/nope")
    assert (r.status_code, r.get_json()) == (410, {"gone": "no job with id 'nope'"})
