"""``offload.integrations.fastapi``: job routes mounted in a user's app, the App as a
dependency, ``accepted``, and the lifespan with its embedded worker."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

import offload
from offload.api.schemas import JobOut
from offload.core.states import State
from offload.errors import ConfigurationError
from offload.integrations import fastapi as offload_fastapi
from offload.service import ServiceConfig, TokenTable
from offload.settings import Settings
from upkit import free_port

FAST = ServiceConfig(events_poll=0.01)
SETTINGS = Settings(idle_wait=0.05, cancel_poll=0.05)
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def make_jobs(url: str) -> offload.App:
    """An App with ``add`` (thread), ``steps`` (async, reports progress) and ``hold`` (async,
    runs until cancelled), the last on queue ``slow``."""
    jobs = offload.App(url, settings=SETTINGS)

    @jobs.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    @jobs.task(name="steps")
    async def steps(n: int) -> str:
        for i in range(n):
            offload.current().progress((i + 1) / n, f"step {i + 1}")
            await asyncio.sleep(0.03)
        return "done"

    @jobs.task(name="hold", queue="slow")
    async def hold(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "held"

    return jobs


def user_api(jobs: offload.App, lifespan: Lifespan | None = None, **mount: Any) -> FastAPI:
    """A user's application: its own endpoints, with offload's job routes mounted."""
    api = FastAPI(lifespan=lifespan)
    offload_fastapi.mount(api, jobs, config=FAST, **mount)

    @api.post("/sums")
    async def create_sum(a: int, b: int, request: Request) -> JSONResponse:
        job = await jobs.asubmit_name("add", [a, b])
        return offload_fastapi.accepted(job, request, prefix=mount.get("prefix", "/jobs"))

    @api.post("/steps")
    async def create_steps(n: int, request: Request, app: offload_fastapi.OffloadApp) -> Any:
        job = await app.asubmit_name("steps", [n])
        return offload_fastapi.accepted(job, request)

    @api.get("/teapot")
    async def teapot() -> None:
        raise HTTPException(418, "short and stout")

    return api


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


@pytest.fixture
async def jobs(db_url: str) -> AsyncIterator[offload.App]:
    app = make_jobs(db_url)
    yield app
    await app.aclose()


@pytest.fixture
async def client(jobs: offload.App) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the user's app with the plain lifespan (no worker)."""
    api = user_api(jobs, offload_fastapi.lifespan(jobs))
    async with api.router.lifespan_context(api), asgi_client(api) as c:
        yield c


def asgi_client(api: FastAPI, root_path: str = "") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=api, root_path=root_path)
    return httpx.AsyncClient(transport=transport, base_url="http://web.test")


async def until(check: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    """The (event, data) pairs of a whole Server-Sent Events body."""
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if not line.startswith(":")
        )
        if fields:
            events.append((fields["event"], orjson.loads(fields["data"])))
    return events


# -- mounted routes ----------------------------------------------------------------------------
async def test_accepted_answers_202_with_the_job_and_its_location(
    client: httpx.AsyncClient, jobs: offload.App
) -> None:
    r = await client.post("/sums", params={"a": 2, "b": 3})
    assert r.status_code == 202
    body = r.json()
    assert r.headers["location"] == f"/jobs/{body['id']}"
    record = (await jobs.aget_job(body["id"])).record
    assert body == JobOut.of(record).model_dump(mode="json")  # the service's job schema
    assert (body["task"], body["args"], body["status"]) == ("add", [2, 3], "queued")


async def test_mounted_routes_read_cancel_retry_and_tell_the_history(
    client: httpx.AsyncClient,
) -> None:
    submitted = await client.post("/jobs", json={"task": "add", "args": [1, 2]})
    assert submitted.status_code == 202
    job_id = submitted.json()["id"]
    assert submitted.headers["location"] == f"/jobs/{job_id}"  # not /v1/jobs/...

    got = await client.get(f"/jobs/{job_id}")
    assert got.status_code == 200
    assert got.json()["status"] == "queued"

    cancelled = await client.post(f"/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"

    retried = await client.post(f"/jobs/{job_id}/retry")
    assert retried.status_code == 202
    assert retried.json()["retry_of"] == job_id
    assert retried.headers["location"] == f"/jobs/{retried.json()['id']}"

    history = (await client.get(f"/jobs/{job_id}/history")).json()
    assert history["job_id"] == job_id
    assert [t["to_status"] for t in history["transitions"]] == ["queued", "cancelled"]

    listed = (await client.get("/jobs", params={"status": "queued"})).json()
    assert [j["id"] for j in listed["jobs"]] == [retried.json()["id"]]


async def test_errors_of_job_routes_have_the_service_shape(client: httpx.AsyncClient) -> None:
    r = await client.get("/jobs/nope")
    assert r.status_code == 404
    assert r.json() == {
        "error": {
            "code": "job_not_found",
            "message": "no job with id 'nope'",
            "details": {"job_id": "nope"},
        }
    }
    r = await client.post("/jobs", json={"task": "nope"})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "unknown_task")
    r = await client.post("/jobs", json={"task": "add", "args": ["x", 1]})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_arguments")
    assert r.json()["error"]["details"] == {"task": "add", "argument": "a"}
    r = await client.post("/jobs", json={"args": []})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_request")
    job_id = (await client.post("/jobs", json={"task": "add", "args": [1, 2]})).json()["id"]
    await client.post(f"/jobs/{job_id}/cancel")
    r = await client.post(f"/jobs/{job_id}/cancel")
    assert (r.status_code, r.json()["error"]["code"]) == (409, "invalid_transition")


async def test_the_users_own_routes_keep_their_error_handling(client: httpx.AsyncClient) -> None:
    r = await client.get("/teapot")
    assert r.status_code == 418
    assert r.json() == {"detail": "short and stout"}  # FastAPI's shape, not offload's
    r = await client.post("/sums", params={"a": "x", "b": 1})
    assert r.status_code == 422
    assert "detail" in r.json()


async def test_job_routes_are_in_the_users_openapi(jobs: offload.App) -> None:
    paths = user_api(jobs).openapi()["paths"]
    assert {
        "/jobs",
        "/jobs/{job_id}",
        "/jobs/{job_id}/events",
        "/jobs/{job_id}/cancel",
        "/jobs/{job_id}/retry",
        "/jobs/{job_id}/history",
        "/sums",
    } <= set(paths)


async def test_a_custom_prefix_and_root_path_are_kept_in_locations(jobs: offload.App) -> None:
    @jobs.task
    async def greet(name: str) -> str:
        return f"hello {name}"

    api = user_api(jobs, prefix="/api/tasks/")

    @api.post("/greetings")
    async def create_greeting(name: str, request: Request) -> JSONResponse:
        return offload_fastapi.accepted(await greet.asubmit(name), request, prefix="/api/tasks")

    async with api.router.lifespan_context(api), asgi_client(api, root_path="/app") as c:
        r = await c.post("/app/greetings", params={"name": "ada"})
        assert r.status_code == 202
        assert r.headers["location"] == f"/app/api/tasks/{r.json()['id']}"
        assert (await c.get(r.headers["location"])).json()["args"] == ["ada"]
        r = await c.post("/app/api/tasks", json={"task": "add", "args": [1, 1]})
        assert r.headers["location"] == f"/app/api/tasks/{r.json()['id']}"


async def test_tokens_guard_the_mounted_routes(jobs: offload.App) -> None:
    tokens = TokenTable.parse("s3cret=acme:admin")
    api = user_api(jobs, tokens=tokens)
    async with asgi_client(api) as c:
        r = await c.get("/jobs/x")
        assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthorized")
        r = await c.post(
            "/jobs",
            json={"task": "add", "args": [1, 2]},
            headers={"Authorization": "Bearer s3cret"},
        )
        assert r.status_code == 202
        mine = await c.get(f"/jobs/{r.json()['id']}", headers={"Authorization": "Bearer s3cret"})
        assert mine.status_code == 200
        other = (await c.post("/sums", params={"a": 1, "b": 2})).json()["id"]  # tenant default
        r = await c.get(f"/jobs/{other}", headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 404  # another tenant's job does not exist for acme


async def test_dependencies_put_the_job_routes_behind_the_users_auth(jobs: offload.App) -> None:
    async def staff_only(request: Request) -> None:
        if request.headers.get("x-staff") != "yes":
            raise HTTPException(403, "staff only")

    api = user_api(jobs, dependencies=[Depends(staff_only)])
    async with asgi_client(api) as c:
        r = await c.get("/jobs/nope")
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "forbidden"
        r = await c.get("/jobs/nope", headers={"x-staff": "yes"})
        assert r.status_code == 404


async def test_mounting_twice_in_one_app_is_refused(jobs: offload.App) -> None:
    api = user_api(jobs)
    with pytest.raises(ConfigurationError, match="once per app"):
        offload_fastapi.mount(api, jobs, prefix="/more")
    with pytest.raises(ConfigurationError, match="start with '/'"):
        offload_fastapi.mount(FastAPI(), jobs, prefix="jobs")


# -- the App as a dependency -------------------------------------------------------------------
async def test_offload_app_dependency_gives_the_mounted_app(
    client: httpx.AsyncClient, jobs: offload.App
) -> None:
    r = await client.post("/steps", params={"n": 2})
    assert r.status_code == 202
    assert (await jobs.aget_job(r.json()["id"])).record.task == "steps"


async def test_use_app_names_the_app_and_can_be_overridden(jobs: offload.App) -> None:
    other = make_jobs("memory://")
    get_jobs = offload_fastapi.use_app(jobs)
    api = FastAPI()

    @api.get("/which")
    async def which(app: offload.App = Depends(get_jobs)) -> dict[str, bool]:  # noqa: B008
        return {"jobs": app is jobs, "other": app is other}

    async with asgi_client(api) as c:
        assert (await c.get("/which")).json() == {"jobs": True, "other": False}
        api.dependency_overrides[get_jobs] = offload_fastapi.use_app(other)
        assert (await c.get("/which")).json() == {"jobs": False, "other": True}


async def test_offload_app_without_mount_or_lifespan_says_what_to_do() -> None:
    api = FastAPI()

    @api.get("/app")
    async def show(app: offload_fastapi.OffloadApp) -> str:
        return repr(app)

    async with asgi_client(api) as c:
        with pytest.raises(ConfigurationError, match="use mount\\(\\) or lifespan\\(\\)"):
            await c.get("/app")


async def test_the_lifespan_alone_attaches_the_app(jobs: offload.App) -> None:
    api = FastAPI(lifespan=offload_fastapi.lifespan(jobs))

    @api.get("/same")
    async def same(app: offload_fastapi.OffloadApp) -> bool:
        return app is jobs

    async with api.router.lifespan_context(api), asgi_client(api) as c:
        assert (await c.get("/same")).json() is True


# -- lifespan and the embedded worker ----------------------------------------------------------
async def test_the_embedded_worker_runs_a_job_end_to_end_with_live_events(
    jobs: offload.App,
) -> None:
    api = user_api(jobs, offload_fastapi.lifespan(jobs, worker=True))
    async with api.router.lifespan_context(api), asgi_client(api) as c:
        r = await c.post("/steps", params={"n": 3})
        location = r.headers["location"]
        stream = await c.get(f"{location}/events")  # ends when the job does
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = sse(stream.text)
        assert events[0][0] == "snapshot"
        assert events[-1][0] == "status"
        assert events[-1][1]["status"] == "succeeded"
        assert events[-1][1]["result"] == "done"
        assert any(name == "progress" for name, _ in events)
        assert (await c.get(location)).json()["progress"] == 1.0


async def test_shutdown_drains_running_jobs_then_releases_the_rest(
    jobs: offload.App, db_url: str
) -> None:
    life = offload_fastapi.lifespan(jobs, worker=True, concurrency=2, shutdown_grace=0.3)
    api = user_api(jobs, life)
    async with api.router.lifespan_context(api), asgi_client(api) as c:
        quick = (await c.post("/jobs", json={"task": "hold", "args": [0.1]})).json()["id"]
        stuck = (await c.post("/jobs", json={"task": "hold", "args": [60]})).json()["id"]
        waiting = (await c.post("/jobs", json={"task": "hold", "args": [60]})).json()["id"]

        async def both_running() -> bool:
            states = [(await c.get(f"/jobs/{i}")).json()["status"] for i in (quick, stuck)]
            return states == ["running", "running"]

        await until(both_running)
    # The lifespan has ended: the web app, its worker and its backend are closed.
    reader = offload.App(db_url)
    try:
        records = {i: (await reader.aget_job(i)).record for i in (quick, stuck, waiting)}
        assert records[quick].status is State.SUCCEEDED  # drained within the grace
        assert records[stuck].status is State.QUEUED  # released: nothing lost
        assert records[stuck].attempts == 0  # ...and its attempt not charged
        assert (await reader.aget_job(stuck)).record.status is State.QUEUED
        assert (await (await reader.aget_job(stuck)).ahistory())[-1].reason.value == "released"
        assert records[waiting].status is State.QUEUED  # never claimed
    finally:
        await reader.aclose()


async def test_the_embedded_worker_serves_only_the_queues_given(jobs: offload.App) -> None:
    api = user_api(jobs, offload_fastapi.lifespan(jobs, worker=True, queues="slow:1"))
    async with api.router.lifespan_context(api), asgi_client(api) as c:
        held = (await c.post("/jobs", json={"task": "hold", "args": [0]})).json()["id"]
        added = (await c.post("/jobs", json={"task": "add", "args": [1, 2]})).json()["id"]

        async def held_done() -> bool:
            return bool((await c.get(f"/jobs/{held}")).json()["status"] == "succeeded")

        await until(held_done)
        assert (await c.get(f"/jobs/{added}")).json()["status"] == "queued"  # queue default


async def test_the_lifespan_closes_the_backend_it_opened(jobs: offload.App) -> None:
    api = FastAPI(lifespan=offload_fastapi.lifespan(jobs))
    loop = asyncio.get_running_loop()
    async with api.router.lifespan_context(api):
        assert loop in jobs._backends
    assert loop not in jobs._backends


# -- offload's errors in the application's own endpoints ---------------------------------------
def own_endpoints(api: FastAPI, jobs: offload.App) -> FastAPI:
    """Endpoints of the user's own that let offload's exceptions escape, and a health route."""

    @api.get("/reports/{job_id}")
    async def report(job_id: str) -> dict[str, str]:
        return {"status": (await jobs.aget_job(job_id)).status.value}

    @api.post("/reports")
    async def create_report(a: str) -> dict[str, str]:
        return {"id": (await jobs.asubmit_name("add", [a, 1])).id}

    @api.get("/health/ready")
    async def ready() -> dict[str, str]:
        await jobs.aping()
        return {"status": "ok"}

    return api


async def test_offload_errors_in_the_apps_own_endpoints_answer_json(jobs: offload.App) -> None:
    api = own_endpoints(user_api(jobs), jobs)
    async with asgi_client(api) as c:
        r = await c.get("/reports/nope")
        assert (r.status_code, r.json()["error"]["code"]) == (404, "job_not_found")
        r = await c.post("/reports", params={"a": "x"})
        assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_arguments")
        assert (await c.get("/health/ready")).json() == {"status": "ok"}
        assert (await c.get("/teapot")).json() == {"detail": "short and stout"}  # FastAPI's


async def test_the_backend_down_answers_503_with_retry_after_without_mount() -> None:
    jobs = make_jobs(f"redis://127.0.0.1:{free_port()}/0")  # nobody listens there
    api = FastAPI()
    offload_fastapi.handle_errors(api, retry_after=7)  # what mount() does by default
    async with asgi_client(own_endpoints(api, jobs)) as c:
        for r in (await c.post("/reports", params={"a": 1}), await c.get("/health/ready")):
            assert r.status_code == 503
            assert r.headers["retry-after"] == "7"
            assert r.json()["error"]["code"] == "backend_unavailable"
    with pytest.raises(offload.BackendUnavailable):
        await jobs.aping()


async def test_error_handlers_are_opt_out_and_keep_the_apps_own(jobs: offload.App) -> None:
    plain = own_endpoints(user_api(jobs, error_handlers=False), jobs)
    transport = httpx.ASGITransport(app=plain, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://web.test") as c:
        assert (await c.get("/reports/nope")).status_code == 500  # as before

    mine = FastAPI()

    @mine.exception_handler(offload.JobNotFound)
    async def gone(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"gone": str(exc)}, status_code=410)

    offload_fastapi.mount(mine, jobs)
    async with asgi_client(own_endpoints(mine, jobs)) as c:
        r = await c.get("/reports/nope")
        assert (r.status_code, r.json()) == (410, {"gone": "no job with id 'nope'"})


LIFESPAN_SCRIPT = """
import asyncio, sys
from fastapi import FastAPI
import offload
from offload.integrations import fastapi as offload_fastapi

jobs = offload.App(sys.argv[1])

@jobs.task(name="add")
def add(a: int, b: int) -> int:
    return a + b

async def main() -> None:
    life = offload_fastapi.lifespan(jobs, worker=sys.argv[2] == "worker")
    api = FastAPI(lifespan=life)
    offload_fastapi.mount(api, jobs)
    async with api.router.lifespan_context(api):
        await add.asubmit(1, 2)

asyncio.run(main())
print("\\n".join(m for m in sys.modules if m.startswith("offload.worker")))
"""


@pytest.mark.parametrize("worker", [False, True])
def test_the_worker_module_is_loaded_only_when_a_worker_starts(
    tmp_path: Path, worker: bool
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    out = subprocess.run(
        [sys.executable, "-c", LIFESPAN_SCRIPT, url, "worker" if worker else "none"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert ("offload.worker.worker" in out.stdout.split()) is worker
