"""``GET /v1/jobs/{id}/events``: Server-Sent Events from connect to the job's end."""

from __future__ import annotations

from typing import Any

from servicekit import (
    ACME_READ,
    ACME_SUBMIT,
    JSON_TYPE,
    TOKENS,
    DownBackend,
    Service,
    Start,
    sse_events,
)

from offload.core.job import Lease
from offload.service import ServiceConfig

FAST = ServiceConfig(events_poll=0.01, events_heartbeat=15.0)


async def test_events_follow_a_job_until_it_ends(start: Start) -> None:
    svc = await start(tokens=TOKENS, config=FAST)
    job = await svc.submit(ACME_SUBMIT)
    backend = await svc.backend()
    stream = sse_events(svc.api, f"/v1/jobs/{job['id']}/events", ACME_READ)
    seen: list[tuple[str, Any]] = []
    lease: Lease | None = None
    async for event, data in stream:
        seen.append((event, data))
        if event == "snapshot":
            assert data == job
            lease = await svc.claim(job["id"])
        elif event == "status" and data["status"] == "running":
            assert lease is not None
            await backend.progress(lease, 0.5, "half way")
        elif event == "progress":
            assert lease is not None
            await backend.complete(lease, 3)
    summary = [(e, d["status"], d["progress"]) for e, d in seen]
    assert summary == [
        ("snapshot", "queued", None),
        ("status", "running", None),
        ("progress", "running", 0.5),
        ("status", "succeeded", 0.5),
    ]
    assert seen[2][1]["progress_message"] == "half way"
    assert seen[-1][1]["result"] == 3


async def test_a_finished_job_sends_its_snapshot_and_ends(svc: Service) -> None:
    job = await svc.submit(ACME_SUBMIT)
    await svc.fail(job["id"])
    r = await svc.client.get(f"/v1/jobs/{job['id']}/events", headers=ACME_READ)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["cache-control"] == "no-cache"
    assert r.text.startswith("event: snapshot\ndata: {")
    assert r.text.count("event: ") == 1
    assert '"status":"failed"' in r.text


async def test_idle_streams_get_keep_alive_comments(start: Start) -> None:
    svc = await start(config=ServiceConfig(events_poll=0.01, events_heartbeat=0.03))
    job = await svc.submit()
    comments = 0
    async for event, _data in sse_events(svc.api, f"/v1/jobs/{job['id']}/events"):
        if event == ":":
            comments += 1
            if comments == 2:
                await svc.client.post(f"/v1/jobs/{job['id']}/cancel", headers=JSON_TYPE)
    assert comments >= 2


async def test_events_of_an_unknown_job_are_404(svc: Service) -> None:
    r = await svc.client.get("/v1/jobs/nope/events", headers=ACME_READ)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "job_not_found"


async def test_the_stream_ends_with_an_error_event_when_the_backend_goes_down(
    start: Start,
) -> None:
    backend = DownBackend()
    svc = await start(config=FAST, backend=backend)
    job = await svc.submit()
    seen: list[tuple[str, Any]] = []
    async for event, data in sse_events(svc.api, f"/v1/jobs/{job['id']}/events"):
        seen.append((event, data))
        backend.down = True
    assert [e for e, _ in seen] == ["snapshot", "error"]
    assert seen[1][1]["error"]["code"] == "backend_unavailable"
