"""Tasks, queues, workers, health, metrics, OpenAPI, request ids, and a backend that is down."""

from __future__ import annotations

import logging

import pytest
from servicekit import ACME_READ, ACME_SUBMIT, TOKENS, DownBackend, Service, Start

from offload.core.job import QueueStats, WorkerInfo
from offload.core.states import State
from offload.service.metrics import Metrics


async def test_tasks_lists_the_registry_with_argument_schemas(svc: Service) -> None:
    r = await svc.client.get("/v1/tasks", headers=ACME_READ)
    assert r.status_code == 200
    tasks = {t["name"]: t for t in r.json()["tasks"]}
    assert set(tasks) == {"add", "send"}
    send = tasks["send"]
    assert (send["queue"], send["executor"], send["retries"], send["timeout"]) == (
        "emails",
        "async",
        2,
        30.0,
    )
    assert send["arguments"]["required"] == ["to"]
    assert set(send["arguments"]["properties"]) == {"to", "subject"}
    assert tasks["add"]["executor"] == "thread"


async def test_queues_count_jobs_by_state(svc: Service) -> None:
    assert (await svc.client.get("/v1/queues", headers=ACME_READ)).json() == {"queues": []}
    first = await svc.submit(ACME_SUBMIT)
    await svc.claim(first["id"])
    await svc.submit(ACME_SUBMIT)
    await svc.submit(ACME_SUBMIT, task="send", args=["a@example.com"])
    r = await svc.client.get("/v1/queues", headers=ACME_READ)
    queues = {q["name"]: q for q in r.json()["queues"]}
    assert queues["default"]["counts"]["queued"] == 1
    assert queues["default"]["counts"]["running"] == 1
    assert queues["default"]["counts"]["failed"] == 0
    assert (queues["default"]["total"], queues["emails"]["total"]) == (2, 1)
    assert 0 <= queues["emails"]["oldest_ready_age"] < 60  # waiting since its submit


async def test_workers_lists_live_workers(svc: Service) -> None:
    backend = await svc.backend()
    assert (await svc.client.get("/v1/workers", headers=ACME_READ)).json() == {"workers": []}
    now = await backend.now()
    info = WorkerInfo(
        id="w-1",
        name="box-1",
        host="box",
        pid=42,
        queues=["default"],
        concurrency=4,
        started_at=now,
        last_seen=now,
        running=1,
        processed=7,
    )
    await backend.heartbeat(info, ttl=30)
    r = await svc.client.get("/v1/workers", headers=ACME_READ)
    assert r.status_code == 200
    [worker] = r.json()["workers"]
    assert (worker["id"], worker["pid"], worker["queues"], worker["processed"]) == (
        "w-1",
        42,
        ["default"],
        7,
    )
    assert worker["last_seen"].endswith("Z")


async def test_workers_running_counts_their_running_jobs_now_not_at_the_heartbeat(
    svc: Service,
) -> None:
    """The dashboard showed "running 1/10" beside a queue table with 3 running: a heartbeat
    can be 10 s old. ``running`` is counted from the backend, as the queue table is."""
    backend = await svc.backend()
    now = await backend.now()
    info = WorkerInfo(
        id="test-worker",
        name="box",
        host="box",
        pid=42,
        queues=["default"],
        concurrency=10,
        started_at=now,
        last_seen=now,
        running=0,
        processed=0,
    )
    await backend.heartbeat(info, ttl=30)  # before its claims: says 0
    ids = [(await svc.submit(ACME_SUBMIT))["id"] for _ in range(3)]
    await svc.claim(ids[0])  # as "test-worker", with the two others of its queue
    workers = (await svc.client.get("/v1/workers", headers=ACME_READ)).json()["workers"]
    queues = (await svc.client.get("/v1/queues", headers=ACME_READ)).json()["queues"]
    assert [(w["id"], w["running"]) for w in workers] == [("test-worker", 3)]
    assert sum(q["counts"]["running"] for q in queues) == 3


async def test_health_probes(svc: Service) -> None:
    assert (await svc.client.get("/health/live")).json() == {"status": "ok"}
    ready = (await svc.client.get("/health/ready")).json()
    assert ready["status"] == "ok"
    assert ready["details"]["finished_jobs"] == 0  # what retention bounds (issue 21)


async def test_unknown_route_and_method_use_the_error_shape(svc: Service) -> None:
    r = await svc.client.get("/v2/nothing")
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
    r = await svc.client.delete("/v1/jobs", headers=ACME_READ)
    assert (r.status_code, r.json()["error"]["code"]) == (405, "method_not_allowed")


# -- request ids ------------------------------------------------------------------------------


async def test_request_id_is_echoed_and_stored_in_the_job(
    svc: Service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="offload.service")
    headers = {**ACME_SUBMIT, "X-Request-ID": "req-123.abc_D"}
    r = await svc.client.post("/v1/jobs", json={"task": "add", "args": [1, 2]}, headers=headers)
    assert r.headers["x-request-id"] == "req-123.abc_D"
    record = await (await svc.backend()).get(r.json()["id"])
    assert record is not None
    assert record.meta["request_id"] == "req-123.abc_D"
    logged = [rec for rec in caplog.records if getattr(rec, "request_id", None) == "req-123.abc_D"]
    assert logged
    assert "POST /v1/jobs -> 202" in logged[0].getMessage()


@pytest.mark.parametrize("given", [None, "", "has space", "x" * 129, "semi;colon"])
async def test_missing_or_insane_request_id_is_replaced(svc: Service, given: str | None) -> None:
    headers = dict(ACME_SUBMIT)
    if given is not None:
        headers["X-Request-ID"] = given
    r = await svc.client.post("/v1/jobs", json={"task": "add", "args": [1, 2]}, headers=headers)
    generated = r.headers["x-request-id"]
    assert generated != given
    assert len(generated) == 32
    record = await (await svc.backend()).get(r.json()["id"])
    assert record is not None
    assert record.meta["request_id"] == generated


async def test_errors_carry_the_request_id_too(svc: Service) -> None:
    r = await svc.client.get("/v1/jobs", headers={"X-Request-ID": "abc"})
    assert (r.status_code, r.headers["x-request-id"]) == (401, "abc")
    r = await svc.client.post("/v1/jobs", content=b"x", headers={"X-Request-ID": "def"})
    assert (r.status_code, r.headers["x-request-id"]) == (415, "def")


# -- metrics ----------------------------------------------------------------------------------


async def test_metrics_in_prometheus_text_format(svc: Service) -> None:
    replay = {**ACME_SUBMIT, "Idempotency-Key": "k"}
    job = await svc.submit(replay)
    await svc.submit(replay)  # the same job: not counted again
    await svc.submit(ACME_SUBMIT)
    await svc.client.get(f"/v1/jobs/{job['id']}", headers=ACME_READ)
    await svc.client.get("/v1/jobs/missing", headers=ACME_READ)
    await svc.client.post("/v1/jobs", content=b"x", headers=ACME_SUBMIT)
    r = await svc.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'offload_jobs_submitted_total{task="add"} 2.0' in text
    assert 'offload_http_requests_total{method="POST",route="/v1/jobs",status="202"} 3.0' in text
    assert (
        'offload_http_requests_total{method="GET",route="/v1/jobs/{job_id}",status="404"} 1.0'
        in text
    )
    assert 'offload_http_requests_total{method="POST",route="/v1/jobs",status="415"} 1.0' in text
    assert 'offload_http_request_duration_seconds_bucket{le="0.5",method="GET"' in text
    assert 'offload_queue_jobs{queue="default",state="queued"} 2.0' in text
    assert 'offload_queue_jobs{queue="default",state="running"} 0.0' in text
    assert "offload_finished_bytes 0.0" in text
    gauge = 'offload_queue_oldest_ready_seconds{queue="default"}'
    [oldest] = [line for line in text.splitlines() if line.startswith(gauge)]
    assert 0 <= float(oldest.split()[-1]) < 60  # two jobs wait since their submit


def test_oldest_ready_gauge_per_queue_and_zero_when_none_is_ready() -> None:
    metrics = Metrics()
    metrics.set_queue_stats(
        [
            QueueStats("mail", {State.QUEUED: 3}, 12.5),
            QueueStats("idle", {State.SUCCEEDED: 1}, None),
        ]
    )
    text = metrics.render().decode()
    assert 'offload_queue_oldest_ready_seconds{queue="mail"} 12.5' in text
    assert 'offload_queue_oldest_ready_seconds{queue="idle"} 0.0' in text
    metrics.set_queue_stats([])  # a queue that vanished is dropped
    assert "offload_queue_oldest_ready_seconds{" not in metrics.render().decode()


async def test_each_service_has_its_own_registry(start: Start) -> None:
    one = await start()
    two = await start()
    await one.submit()
    assert "offload_jobs_submitted_total{" not in (await two.client.get("/metrics")).text


# -- OpenAPI ----------------------------------------------------------------------------------


async def test_openapi_publishes_routes_and_wire_schemas(svc: Service) -> None:
    spec = (await svc.client.get("/openapi.json", headers=ACME_READ)).json()
    paths = spec["paths"]
    for path in (
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/cancel",
        "/v1/jobs/{job_id}/retry",
        "/v1/jobs/{job_id}/history",
        "/v1/jobs/{job_id}/events",
        "/v1/tasks",
        "/v1/queues",
        "/v1/workers",
        "/health/live",
        "/health/ready",
        "/metrics",
    ):
        assert path in paths, path
    schemas = spec["components"]["schemas"]
    assert {"SubmitRequest", "JobOut", "JobPage", "ErrorOut", "TaskOut"} <= set(schemas)
    assert "tenant" not in schemas["JobOut"]["properties"]
    assert "202" in paths["/v1/jobs"]["post"]["responses"]
    assert "413" in paths["/v1/jobs"]["post"]["responses"]


# -- a backend that is down -------------------------------------------------------------------


async def test_backend_down_answers_503_with_retry_after(start: Start) -> None:
    backend = DownBackend()
    svc = await start(tokens=TOKENS, backend=backend)
    job = await svc.submit(ACME_SUBMIT)
    backend.down = True
    for method, path in [
        ("POST", "/v1/jobs"),
        ("GET", "/v1/jobs"),
        ("GET", "/v1/queues"),
        ("GET", f"/v1/jobs/{job['id']}"),
        ("GET", "/health/ready"),
    ]:
        body = {"task": "add", "args": [1, 2]} if method == "POST" else None
        r = await svc.client.request(method, path, json=body, headers=ACME_SUBMIT)
        assert r.status_code == 503, (method, path)
        assert r.headers["retry-after"] == "5"
        assert "switched" not in r.text  # the backend's own message stays in the log
    metrics = await svc.client.get("/metrics")  # still serves the process's own metrics
    assert metrics.status_code == 200
    backend.down = False
    assert (await svc.client.get("/health/ready")).status_code == 200
