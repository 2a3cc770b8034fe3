"""Bad input at the HTTP edge (issue 15): each probe gets a 4xx and nothing is stored.

Run on memory, SQLite and Redis. docs/reliability.md lists each probe and its test.
"""

from __future__ import annotations

import base64
import dataclasses
import time

import pytest
from servicekit import ACME_READ, ACME_SUBMIT, JSON_TYPE, TOKENS, Service, Start

from offload.client import SubmitOptions
from offload.core.validate import KEY_RULE, MAX_DEPTH, MAX_EPOCH, QUEUE_NAME_RULE
from offload.service import ServiceConfig

JSON = {**ACME_SUBMIT, "Content-Type": "application/json"}


async def stored_jobs(svc: Service) -> list[object]:
    r = await svc.client.get("/v1/jobs", headers=ACME_READ)
    assert r.status_code == 200, r.text
    jobs: list[object] = r.json()["jobs"]
    return jobs


@pytest.mark.parametrize(
    "run_at",
    [
        "9999-12-31T23:59:59-12:00",  # past the maximum once in UTC
        "0001-01-01T00:00:00+14:00",  # before the epoch
        MAX_EPOCH + 1,  # a second past the maximum: not read as milliseconds
        -1,
        True,
        "tomorrow",
    ],
)
async def test_a_bad_run_at_is_422_and_stores_nothing(svc: Service, run_at: object) -> None:
    r = await svc.client.post(
        "/v1/jobs", json={"task": "add", "args": [1, 2], "run_at": run_at}, headers=ACME_SUBMIT
    )
    assert r.status_code == 422, r.text
    assert "run_at" in r.json()["error"]["message"]
    assert await stored_jobs(svc) == []
    scheduled = await svc.client.get("/v1/jobs?status=scheduled", headers=ACME_READ)
    assert scheduled.status_code == 200


async def test_run_at_numbers_are_seconds_up_to_the_maximum(svc: Service) -> None:
    job = await svc.submit(ACME_SUBMIT, run_at=MAX_EPOCH)
    assert job["run_at"] == "9999-12-31T23:59:59Z"
    assert job["status"] == "scheduled"


async def test_run_at_with_delay_is_422(svc: Service) -> None:
    r = await svc.client.post(
        "/v1/jobs",
        json={"task": "add", "args": [1, 2], "run_at": 2_000_000_000, "delay": 60},
        headers=ACME_SUBMIT,
    )
    assert r.status_code == 422
    assert "either delay or run_at" in r.json()["error"]["message"]


async def test_a_stored_time_out_of_range_never_breaks_the_job_list(svc: Service) -> None:
    """Serialization cannot fail on a stored value: such a time is shown clamped."""
    new = svc.app.prepare(svc.app.registry.get("add"), [1, 2], {}, SubmitOptions(tenant="acme"))
    backend = await svc.backend()
    await backend.submit([dataclasses.replace(new, run_at=MAX_EPOCH + 86_400 * 400)])
    [job] = await stored_jobs(svc)
    assert job["run_at"] == "9999-12-31T23:59:59Z"  # type: ignore[index]


@pytest.mark.parametrize("body", [b"[NaN, 1]", b"[Infinity, 1]", b"[1e999, 1]", b"[-1e999, 1]"])
async def test_numbers_json_cannot_hold_in_arguments_are_422(svc: Service, body: bytes) -> None:
    for payload in (
        b'{"task": "add", "args": ' + body + b"}",
        b'{"task": "add", "kwargs": {"a": 1, "b": ' + body + b"}}",
    ):
        r = await svc.client.post("/v1/jobs", content=payload, headers=JSON)
        assert r.status_code == 422, r.text
        assert "JSON cannot represent" in r.json()["error"]["message"]
    assert await stored_jobs(svc) == []


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 300, 1_000, 100_000])
async def test_deeply_nested_arguments_are_4xx_at_every_depth(svc: Service, depth: int) -> None:
    deep = b"[" * depth + b"1" + b"]" * depth
    r = await svc.client.post(
        "/v1/jobs", content=b'{"task": "add", "args": [1, ' + deep + b"]}", headers=JSON
    )
    assert 400 <= r.status_code < 500, r.text
    assert await stored_jobs(svc) == []


@pytest.mark.parametrize(
    "change",
    [{"priority": 7}, {"delay": 30}, {"run_at": 2_000_000_000}, {"concurrency_key": "k2"}],
)
async def test_an_idempotency_key_reused_with_other_options_is_409(
    svc: Service, change: dict[str, object]
) -> None:
    key = {**ACME_SUBMIT, "Idempotency-Key": "order-7"}
    body = {"task": "add", "args": [1, 2], "concurrency_key": "k1"}
    first = await svc.client.post("/v1/jobs", json=body, headers=key)
    same = await svc.client.post("/v1/jobs", json=body, headers=key)
    assert (first.status_code, same.status_code) == (202, 202)
    assert first.json()["id"] == same.json()["id"]
    other = await svc.client.post("/v1/jobs", json={**body, **change}, headers=key)
    assert other.status_code == 409, other.text


@pytest.mark.parametrize("raw", [b"nan|x", b"inf|x", b"-inf|x", b"1.5"])
async def test_a_cursor_that_decodes_to_no_position_is_400(svc: Service, raw: bytes) -> None:
    cursor = base64.urlsafe_b64encode(raw).decode()
    r = await svc.client.get("/v1/jobs", params={"cursor": cursor}, headers=ACME_READ)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_cursor")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("queue", "a\x00b"),
        ("queue", "<script>alert(1)</script>"),
        ("queue", "x" * 101),
        ("queue", "with space"),
        ("concurrency_key", "tenant\x00"),
        ("concurrency_key", "two words"),
    ],
)
async def test_queue_names_and_keys_keep_to_their_character_set(
    svc: Service, field: str, value: str
) -> None:
    r = await svc.client.post(
        "/v1/jobs", json={"task": "add", "args": [1, 2], field: value}, headers=ACME_SUBMIT
    )
    assert r.status_code == 422, r.text
    assert field.replace("_", " ") in r.json()["error"]["message"].replace("_", " ")
    assert await stored_jobs(svc) == []


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("queue", "x" * 250, QUEUE_NAME_RULE),
        ("queue", "", QUEUE_NAME_RULE),
        ("queue", "with space", QUEUE_NAME_RULE),
        ("concurrency_key", "k" * 250, KEY_RULE),
        ("concurrency_key", "", KEY_RULE),
    ],
)
async def test_one_check_names_the_rule_for_every_bad_queue_or_key(
    svc: Service, field: str, value: str, rule: str
) -> None:
    # The schema's own length and pattern limits (200, no spaces) answered before the rule did,
    # with other words and another bound than the Python API's.
    r = await svc.client.post(
        "/v1/jobs", json={"task": "add", "args": [1, 2], field: value}, headers=ACME_SUBMIT
    )
    assert r.status_code == 422, r.text
    assert rule in r.json()["error"]["message"]


# -- abuse: cross-site requests, DNS rebinding, headers, token guessing ------------------------


async def test_a_request_that_changes_state_without_a_token_must_be_json(anon: Service) -> None:
    job = await anon.submit()
    for headers in (
        {},
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded"},
    ):
        r = await anon.client.post(f"/v1/jobs/{job['id']}/cancel", headers=headers)
        assert r.status_code == 415, (headers, r.text)
    assert (await anon.client.get(f"/v1/jobs/{job['id']}")).json()["status"] == "queued"
    ok = await anon.client.post(f"/v1/jobs/{job['id']}/cancel", headers=JSON_TYPE)
    assert ok.status_code == 200


async def test_without_tokens_a_loopback_bind_answers_only_loopback_hosts(start: Start) -> None:
    svc = await start(config=ServiceConfig(bound_to_loopback=True))
    for host in ("127.0.0.1:8000", "localhost", "[::1]:8000", "LOCALHOST:1"):
        r = await svc.client.get("/v1/jobs", headers={"Host": host})
        assert r.status_code == 200, host
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", "0.0.0.0"):
        r = await svc.client.get("/v1/jobs", headers={"Host": host})
        assert r.status_code == 421, host
        assert r.json()["error"]["code"] == "misdirected_request"
    with_tokens = await start(tokens=TOKENS, config=ServiceConfig(bound_to_loopback=True))
    r = await with_tokens.client.get("/v1/jobs", headers={**ACME_READ, "Host": "api.example"})
    assert r.status_code == 200


async def test_answers_are_not_cached_or_sniffed(svc: Service) -> None:
    for path, headers in (
        ("/v1/jobs", ACME_READ),
        ("/v1/jobs/nope", ACME_READ),
        ("/v1/jobs", {}),
        ("/health/ready", {}),
    ):
        r = await svc.client.get(path, headers=headers)
        assert r.headers["cache-control"] == "no-store", path
        assert r.headers["x-content-type-options"] == "nosniff", path


async def test_requests_with_no_or_a_wrong_token_are_rate_limited(start: Start) -> None:
    svc = await start(tokens=TOKENS, config=ServiceConfig(rate_limit=0.01, rate_burst=3))
    codes = [
        (
            await svc.client.get("/v1/jobs", headers={"Authorization": f"Bearer guess-{i}"})
        ).status_code
        for i in range(5)
    ]
    assert codes[:3] == [401, 401, 401]
    assert codes[3:] == [429, 429]
    # A tenant with a valid token has a bucket of its own.
    assert (await svc.client.get("/v1/jobs", headers=ACME_READ)).status_code == 200


async def test_guessing_tokens_meets_a_tighter_limit_than_tenants_by_default(start: Start) -> None:
    # With the tenants' limit (1,000 a second, bursts of 2,000) every one of 300 guesses got
    # its 401: a guesser was not slowed at all.
    svc = await start(tokens=TOKENS)
    began = time.monotonic()
    codes = [
        (
            await svc.client.get("/v1/jobs", headers={"Authorization": f"Bearer guess-{i}"})
        ).status_code
        for i in range(300)
    ]
    # The burst, plus what the bucket refilled while the guesses ran (slow on a loaded machine).
    config = ServiceConfig()
    refilled = config.auth_failure_limit * (time.monotonic() - began)
    assert codes.count(401) <= config.auth_failure_burst + int(refilled) + 1, (codes, refilled)
    assert codes[-1] == 429
    assert (await svc.client.get("/v1/jobs", headers=ACME_READ)).status_code == 200


async def test_a_queue_no_task_declares_is_accepted_with_a_warning(svc: Service) -> None:
    r = await svc.client.post(
        "/v1/jobs", json={"task": "add", "args": [1, 2], "queue": "nobody"}, headers=ACME_SUBMIT
    )
    assert r.status_code == 202
    assert "no task declares queue 'nobody'" in r.headers["offload-warning"]
    declared = await svc.client.post(
        "/v1/jobs", json={"task": "add", "args": [1, 2], "queue": "emails"}, headers=ACME_SUBMIT
    )
    assert "offload-warning" not in declared.headers
