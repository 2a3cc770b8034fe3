"""``/v1/jobs``: submit, read, list, cancel, retry and history, on memory and SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from servicekit import ACME_ADMIN, ACME_SUBMIT, Service, build_app

from offload.service import create_app

JOB_FIELDS = {
    "id",
    "task",
    "queue",
    "status",
    "args",
    "kwargs",
    "priority",
    "attempts",
    "progress",
    "progress_message",
    "result",
    "error",
    "cancel_requested",
    "retry_of",
    "created_at",
    "run_at",
    "started_at",
    "finished_at",
}


async def test_submit_answers_202_with_the_job_and_its_location(svc: Service) -> None:
    r = await svc.client.post(
        "/v1/jobs", json={"task": "add", "args": [1], "kwargs": {"b": 2}}, headers=ACME_SUBMIT
    )
    assert r.status_code == 202
    job = r.json()
    assert set(job) == JOB_FIELDS
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    assert (job["task"], job["queue"], job["status"]) == ("add", "default", "queued")
    assert (job["args"], job["kwargs"], job["attempts"]) == ([1], {"b": 2}, 0)
    assert job["created_at"].endswith("Z")
    record = await (await svc.backend()).get(job["id"])
    assert record is not None
    assert record.tenant == "acme"


async def test_submit_options_reach_the_job(svc: Service) -> None:
    run_at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    job = await svc.submit(
        ACME_SUBMIT,
        task="send",
        args=["a@example.com"],
        queue="urgent",
        priority=7,
        run_at=run_at.isoformat(),
        concurrency_key="customer-1",
    )
    assert (job["queue"], job["priority"], job["status"]) == ("urgent", 7, "scheduled")
    assert datetime.fromisoformat(job["run_at"]) == run_at
    record = await (await svc.backend()).get(job["id"])
    assert record is not None
    assert record.concurrency_key == "customer-1"


async def test_run_at_accepts_epoch_seconds_and_delay_schedules(svc: Service) -> None:
    epoch = datetime.now(UTC).timestamp() + 3600
    by_epoch = await svc.submit(ACME_SUBMIT, run_at=epoch)
    assert by_epoch["status"] == "scheduled"
    assert abs(datetime.fromisoformat(by_epoch["run_at"]).timestamp() - epoch) < 0.001
    delayed = await svc.submit(ACME_SUBMIT, delay=600)
    assert delayed["status"] == "scheduled"


async def test_unknown_task_is_422_with_the_known_tasks(svc: Service) -> None:
    r = await svc.client.post("/v1/jobs", json={"task": "nope"}, headers=ACME_SUBMIT)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "unknown_task"
    assert error["details"]["known_tasks"] == ["add", "send"]


async def test_bad_argument_is_422_naming_the_argument(svc: Service) -> None:
    r = await svc.client.post(
        "/v1/jobs", json={"task": "add", "args": [1, "two"]}, headers=ACME_SUBMIT
    )
    assert r.status_code == 422
    error = r.json()["error"]
    assert (error["code"], error["details"]["argument"]) == ("invalid_arguments", "b")
    assert "'b'" in error["message"]
    missing = await svc.client.post("/v1/jobs", json={"task": "add"}, headers=ACME_SUBMIT)
    assert missing.status_code == 422
    assert "missing a required argument" in missing.json()["error"]["message"]
    assert missing.json()["error"]["details"]["argument"] == "a"


async def test_body_schema_errors_are_422(svc: Service) -> None:
    bodies: list[dict[str, object]] = [
        {"args": []},
        {"task": "add", "delay": -1},
        {"task": "add", "colour": 1},
        {"task": "add", "args": {"a": 1}},
        {"task": "add", "run_at": "soon"},
        {"task": "two words"},
        {"task": "add", "priority": 2**40},
    ]
    for body in bodies:
        r = await svc.client.post("/v1/jobs", json=body, headers=ACME_SUBMIT)
        assert r.status_code == 422, body
        assert r.json()["error"]["code"] == "invalid_request"


async def test_idempotency_key_returns_the_same_job_and_409_on_a_different_body(
    svc: Service,
) -> None:
    key = {**ACME_SUBMIT, "Idempotency-Key": "order-42"}
    first = await svc.client.post("/v1/jobs", json={"task": "add", "args": [1, 2]}, headers=key)
    again = await svc.client.post("/v1/jobs", json={"task": "add", "args": [1, 2]}, headers=key)
    assert (first.status_code, again.status_code) == (202, 202)
    assert first.json()["id"] == again.json()["id"]
    other = await svc.client.post("/v1/jobs", json={"task": "add", "args": [5, 5]}, headers=key)
    assert other.status_code == 409
    error = other.json()["error"]
    assert (error["code"], error["details"]["job_id"]) == (
        "idempotency_conflict",
        first.json()["id"],
    )


async def test_get_job_and_404(svc: Service) -> None:
    job = await svc.submit(ACME_SUBMIT)
    r = await svc.client.get(f"/v1/jobs/{job['id']}", headers=ACME_SUBMIT)
    assert r.status_code == 200
    assert r.json() == job
    missing = await svc.client.get("/v1/jobs/no-such-job", headers=ACME_SUBMIT)
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "code": "job_not_found",
        "message": "no job with id 'no-such-job'",
        "details": {"job_id": "no-such-job"},
    }


async def test_finished_job_shows_result_and_times(svc: Service) -> None:
    job = await svc.submit(ACME_SUBMIT)
    lease = await svc.claim(job["id"])
    await (await svc.backend()).complete(lease, 3)
    done = (await svc.client.get(f"/v1/jobs/{job['id']}", headers=ACME_SUBMIT)).json()
    assert (done["status"], done["result"], done["attempts"]) == ("succeeded", 3, 1)
    assert done["started_at"] <= done["finished_at"]


async def test_list_filters_and_paginates(svc: Service) -> None:
    ids = [(await svc.submit(ACME_SUBMIT, args=[i, i]))["id"] for i in range(5)]
    await svc.submit(ACME_SUBMIT, task="send", args=["x@example.com"])
    r = await svc.client.get("/v1/jobs", params={"task": "add", "limit": 2}, headers=ACME_SUBMIT)
    assert r.status_code == 200
    seen: list[str] = []
    page = r.json()
    while True:
        seen += [j["id"] for j in page["jobs"]]
        assert len(page["jobs"]) <= 2
        if page["next_cursor"] is None:
            break
        params = {"task": "add", "limit": 2, "cursor": page["next_cursor"]}
        page = (await svc.client.get("/v1/jobs", params=params, headers=ACME_SUBMIT)).json()
    assert seen == list(reversed(ids))
    by_queue = await svc.client.get("/v1/jobs", params={"queue": "emails"}, headers=ACME_SUBMIT)
    assert [j["task"] for j in by_queue.json()["jobs"]] == ["send"]
    by_status = await svc.client.get(
        "/v1/jobs", params={"status": "succeeded"}, headers=ACME_SUBMIT
    )
    assert by_status.json() == {"jobs": [], "next_cursor": None}


async def test_list_rejects_a_bad_cursor_400_and_bad_filters_422(svc: Service) -> None:
    r = await svc.client.get("/v1/jobs", params={"cursor": "!!!"}, headers=ACME_SUBMIT)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_cursor")
    bad = await svc.client.get("/v1/jobs", params={"status": "asleep"}, headers=ACME_SUBMIT)
    assert bad.status_code == 422
    too_many = await svc.client.get("/v1/jobs", params={"limit": 10_000}, headers=ACME_SUBMIT)
    assert too_many.status_code == 422


async def test_cancel_a_waiting_job_then_409(svc: Service) -> None:
    job = await svc.submit(ACME_ADMIN)
    r = await svc.client.post(f"/v1/jobs/{job['id']}/cancel", headers=ACME_ADMIN)
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled"
    again = await svc.client.post(f"/v1/jobs/{job['id']}/cancel", headers=ACME_ADMIN)
    assert again.status_code == 409
    assert again.json()["error"]["details"] == {"job_id": job["id"], "status": "cancelled"}


async def test_cancel_a_running_job_requests_it(svc: Service) -> None:
    job = await svc.submit(ACME_ADMIN)
    await svc.claim(job["id"])
    r = await svc.client.post(f"/v1/jobs/{job['id']}/cancel", headers=ACME_ADMIN)
    assert r.status_code == 200
    assert (r.json()["status"], r.json()["cancel_requested"]) == ("running", True)


async def test_retry_a_failed_job_makes_a_new_one(svc: Service) -> None:
    job = await svc.submit(ACME_ADMIN)
    await svc.fail(job["id"])
    r = await svc.client.post(f"/v1/jobs/{job['id']}/retry", headers=ACME_ADMIN)
    assert r.status_code == 202
    new = r.json()
    assert new["id"] != job["id"]
    assert (new["retry_of"], new["status"], new["args"]) == (job["id"], "queued", [1, 2])
    assert r.headers["location"] == f"/v1/jobs/{new['id']}"
    record = await (await svc.backend()).get(new["id"])
    assert record is not None
    assert record.tenant == "acme"


async def test_retry_a_job_that_did_not_fail_is_409(svc: Service) -> None:
    job = await svc.submit(ACME_ADMIN)
    r = await svc.client.post(f"/v1/jobs/{job['id']}/retry", headers=ACME_ADMIN)
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "invalid_transition"


async def test_history_lists_the_transitions(svc: Service) -> None:
    job = await svc.submit(ACME_SUBMIT)
    await svc.fail(job["id"])
    r = await svc.client.get(f"/v1/jobs/{job['id']}/history", headers=ACME_SUBMIT)
    assert r.status_code == 200
    body = r.json()
    assert body["job_id"] == job["id"]
    moves = [(t["from_status"], t["to_status"], t["reason"]) for t in body["transitions"]]
    assert moves == [
        (None, "queued", "submitted"),
        ("queued", "running", "claimed"),
        ("running", "failed", "failed"),
    ]
    assert body["transitions"][1]["worker_id"] == "test-worker"
    missing = await svc.client.get("/v1/jobs/nope/history", headers=ACME_SUBMIT)
    assert missing.status_code == 404


async def test_numbers_json_cannot_hold_are_422_not_500(svc: Service) -> None:
    headers = {**ACME_SUBMIT, "Content-Type": "application/json"}
    for body in (
        b'{"task": "add", "args": [1e400, 1]}',
        b'{"task": "add", "args": [1, 2], "kwargs": {}, "priority": 1e400}',
    ):
        r = await svc.client.post("/v1/jobs", content=body, headers=headers)
        assert r.status_code == 422, r.text
    huge = await svc.client.post(
        "/v1/jobs", json={"task": "add", "args": [2**70, 1]}, headers=ACME_SUBMIT
    )
    assert huge.status_code == 422
    assert huge.json()["error"]["details"]["argument"] == "a"


async def test_locations_are_built_from_the_route_behind_the_root_path() -> None:
    api = create_app(build_app("memory://"))
    transport = httpx.ASGITransport(app=api, root_path="/offload")
    async with (
        api.router.lifespan_context(api),
        httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client,
    ):
        r = await client.post("/offload/v1/jobs", json={"task": "add", "args": [1, 2]})
        assert r.headers["location"] == f"/offload/v1/jobs/{r.json()['id']}"
        assert (await client.get(r.headers["location"])).json()["id"] == r.json()["id"]
