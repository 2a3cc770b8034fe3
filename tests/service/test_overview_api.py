"""``/v1/overview/...``: the read models of the dashboard's pages, on every backend."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from servicekit import ACME_READ, GLOBEX_ADMIN, Service, sse_events

import offload
from offload.client import SubmitOptions
from offload.core.job import Lease, WorkerInfo
from offload.errors import BackendUnavailable
from offload.service.overview import expected_ticks
from offload.service.routes_dash import follow_view

VIEWS = ("schedules", "limits", "workflows", "workers", "queues")


async def get(svc: Service, view: str, headers: dict[str, str] | None = ACME_READ) -> Any:
    response = await svc.client.get(f"/v1/overview/{view}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_every_view_needs_a_token_and_is_in_the_schema(svc: Service) -> None:
    for view in VIEWS:
        assert (await svc.client.get(f"/v1/overview/{view}")).status_code == 401
        assert (await get(svc, view))["now"].endswith("Z")
    paths = (await svc.client.get("/openapi.json", headers=ACME_READ)).json()["paths"]
    for view in VIEWS:
        assert f"/v1/overview/{view}" in paths
    assert "/v1/overview/{view}/events" in paths


async def test_schedules_show_last_tick_and_missed_ticks(anon: Service) -> None:
    app = anon.app

    @app.periodic(every=timedelta(minutes=5), name="digest")
    async def digest() -> None:
        return None

    backend = await anon.backend()
    schedule = app.schedules["digest"]
    ticks = expected_ticks(schedule, await backend.now())
    assert len(ticks) in (11, 12)  # the last hour, but for the last 30 s
    fired = ticks[2]  # the third newest tick fired; the two after it did not
    options = SubmitOptions(meta=schedule.tick_meta(fired), idempotency_key=f"t{fired}")
    job = await app.asubmit_name("digest", [], {}, options)
    [row] = (await get(anon, "schedules", None))["schedules"]
    assert row["name"] == row["task"] == "digest"
    assert row["schedule"] == "every 5m"
    assert row["last_status"] == "queued"
    assert row["last_job"] == job.id
    assert row["missed_ticks"] == 2  # the two ticks after the fired one
    assert row["next_tick"] > row["last_tick"]


async def test_limits_show_caps_use_and_waiting_jobs_per_key(svc: Service) -> None:
    @svc.app.task(name="llm", concurrency=5, key_concurrency=2, rate_limit="30/m")
    async def llm(prompt: str) -> str:
        return prompt

    for key in ("k1", "k1", "k2"):
        await svc.submit(
            ACME_READ | {"Authorization": "Bearer acme-submit-token"},
            task="llm",
            args=["hi"],
            concurrency_key=key,
        )
    await svc.submit(GLOBEX_ADMIN, task="llm", args=["x"], concurrency_key="globex-secret")
    backend = await svc.backend()
    claimed = await backend.claim("w", {"default": 1}, 1, 30.0)
    assert len(claimed) == 1
    [row] = (await get(svc, "limits"))["limits"]
    assert (row["task"], row["concurrency"], row["key_concurrency"]) == ("llm", 5, 2)
    assert row["rate_per_minute"] == 30.0
    assert (row["running"], row["waiting"]) == (1, 3)
    assert row["started_last_minute"] == 1
    keys = {k["key"]: (k["running"], k["waiting"]) for k in row["keys"]}
    assert set(keys) == {"k1", "k2"}  # never another tenant's key
    assert sum(r for r, _ in keys.values()) == 1
    assert sum(w for _, w in keys.values()) == 2


async def test_workflows_show_each_step_state(anon: Service) -> None:
    app = anon.app

    @app.task(name="step")
    def step(*values: int) -> int:
        return sum(values)

    flow = offload.chain(step.s(1, 2), offload.group(step.s(10), step.s(20)), step.s(100))
    workflow = await app.asubmit_workflow(flow)
    [row] = (await get(anon, "workflows", None))["workflows"]
    assert (row["id"], row["status"], row["steps"], row["done"]) == (workflow.id, "pending", 4, 0)
    root = row["root"]
    assert root["kind"] == "chain"
    first, group, last = root["children"]
    assert (first["kind"], first["task"], first["status"], first["job_id"]) == (
        "step",
        "step",
        "queued",
        workflow.id,
    )
    assert group["kind"] == "group"
    assert [m["status"] for m in group["children"]] == [None, None]
    assert last["status"] is None
    backend = await anon.backend()
    [job] = await backend.claim("w", {"default": 1}, 1, 30.0)
    await backend.complete(Lease(job.id, job.token), 3)
    [row] = (await get(anon, "workflows", None))["workflows"]
    assert (row["status"], row["done"]) == ("running", 1)
    assert row["root"]["children"][0]["status"] == "succeeded"


async def test_workers_show_heartbeat_age_and_own_jobs(svc: Service) -> None:
    backend = await svc.backend()
    now = await backend.now()
    info = WorkerInfo(
        id="w-1",
        name="box-1",
        host="box",
        pid=42,
        queues=["default"],
        concurrency=4,
        started_at=now - 60,
        last_seen=now - 2,
        running=0,
        processed=7,
    )
    await backend.heartbeat(info, ttl=30)
    mine = await svc.submit({"Authorization": "Bearer acme-submit-token"})
    await svc.submit(GLOBEX_ADMIN)
    claimed = await backend.claim("w-1", {"default": 10}, 10, 30.0)
    assert len(claimed) == 2
    view = await get(svc, "workers")
    [worker] = view["workers"]
    assert (worker["name"], worker["running"], worker["processed"]) == ("box-1", 2, 7)
    assert 0 <= worker["heartbeat_age"] < 30
    assert [j["id"] for j in worker["jobs"]] == [mine["id"]]  # acme's only
    assert view["orphaned"] == 0


async def test_queues_chart_counts_finished_jobs_and_their_wait(anon: Service) -> None:
    backend = await anon.backend()
    done = await anon.submit()
    failed = await anon.submit(task="send", args=["a@b.c"])
    lease = await anon.claim(done["id"])
    await backend.complete(lease, 3)
    await anon.fail(failed["id"])
    await anon.submit()  # still queued
    view = await get(anon, "queues", None)
    assert (view["window"], view["bucket"]) == (3600, 60)
    queues = {q["name"]: q for q in view["queues"]}
    assert set(queues) == {"default", "emails"}
    default, emails = queues["default"], queues["emails"]
    assert len(default["buckets"]) == 60
    assert sum(b["succeeded"] for b in default["buckets"]) == 1
    assert sum(b["failed"] for b in emails["buckets"]) == 1
    assert default["buckets"][-1]["wait_max"] >= 0
    assert default["oldest_ready_age"] is not None
    assert default["ready"] >= 1
    small = (await anon.client.get("/v1/overview/queues?window=600&bucket=120")).json()
    assert len(small["queues"][0]["buckets"]) == 5
    wide = (await anon.client.get("/v1/overview/queues?window=86400&bucket=5")).json()
    assert (wide["bucket"], len(wide["queues"][0]["buckets"])) == (120, 720)  # widened


async def test_events_stream_starts_with_a_snapshot(anon: Service) -> None:
    await anon.submit()
    async for event, data in sse_events(anon.api, "/v1/overview/queues/events"):
        assert event == "snapshot"
        assert [q["name"] for q in data["queues"]] == ["default"]
        break


class Box(BaseModel):
    now: float
    value: int


async def test_follow_view_sends_updates_only_on_change_and_survives_errors() -> None:
    values = iter([1, 1, 2, None, 2, 2])

    async def read() -> BaseModel:
        await asyncio.sleep(0)
        value = next(values)
        if value is None:
            raise BackendUnavailable("down")
        return Box(now=asyncio.get_running_loop().time(), value=value)

    events: list[tuple[bytes, int | None]] = []
    async for chunk in follow_view(read, interval=0.001, heartbeat=60):
        name = chunk.split(b"\n")[0].removeprefix(b"event: ")
        data = chunk.split(b"data: ")[1]
        events.append((name, None if name == b"error" else Box.model_validate_json(data).value))
        if len(events) == 4:
            break
    assert events == [(b"snapshot", 1), (b"update", 2), (b"error", None), (b"snapshot", 2)]
