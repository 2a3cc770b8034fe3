"""Tokens, roles, tenancy, body limits, content types and rate limits (DESIGN section 10)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from servicekit import (
    ACME_ADMIN,
    ACME_READ,
    ACME_SUBMIT,
    GLOBEX_ADMIN,
    JSON_TYPE,
    TOKENS,
    Service,
    Start,
)

from offload.errors import ConfigurationError
from offload.service import Role, ServiceConfig, TokenTable

# -- authentication ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic YTpi"}],
    ids=["missing", "unknown", "not-bearer"],
)
async def test_missing_or_bad_token_is_401_with_a_challenge(
    svc: Service, headers: dict[str, str]
) -> None:
    for method, path in [
        ("GET", "/v1/jobs"),
        ("POST", "/v1/jobs"),
        ("GET", "/v1/tasks"),
        ("GET", "/v1/jobs/x/events"),
    ]:
        r = await svc.client.request(method, path, headers=headers, json={"task": "add"})
        assert r.status_code == 401, (method, path)
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["error"]["code"] == "unauthorized"


async def test_health_and_metrics_need_no_token(svc: Service) -> None:
    for path in ("/health/live", "/health/ready", "/metrics"):
        assert (await svc.client.get(path)).status_code == 200, path


async def test_with_tokens_the_api_schema_needs_one_and_the_cdn_docs_are_off(
    svc: Service, anon: Service
) -> None:
    """/docs and /redoc load scripts from a public CDN: only without tokens (a laptop)."""
    assert (await svc.client.get("/openapi.json")).status_code == 401
    schema = await svc.client.get("/openapi.json", headers=ACME_READ)
    assert schema.status_code == 200
    assert "/v1/jobs" in schema.json()["paths"]
    for path in ("/docs", "/redoc"):
        assert (await svc.client.get(path, headers=ACME_READ)).status_code == 404, path
        assert (await anon.client.get(path)).status_code == 200, path
    assert (await anon.client.get("/openapi.json")).status_code == 200


async def test_without_tokens_everyone_is_the_default_tenants_admin(anon: Service) -> None:
    job = await anon.submit()
    record = await (await anon.backend()).get(job["id"])
    assert record is not None
    assert record.tenant == "default"
    r = await anon.client.post(f"/v1/jobs/{job['id']}/cancel", headers=JSON_TYPE)
    assert r.status_code == 200


# -- roles ------------------------------------------------------------------------------------


async def test_read_role_cannot_submit_and_submit_role_cannot_cancel(svc: Service) -> None:
    r = await svc.client.post("/v1/jobs", json={"task": "add", "args": [1, 2]}, headers=ACME_READ)
    assert r.status_code == 403
    assert r.json()["error"]["details"] == {"required_role": "submit", "role": "read"}
    job = await svc.submit(ACME_SUBMIT)
    assert (await svc.client.get(f"/v1/jobs/{job['id']}", headers=ACME_READ)).status_code == 200
    for action in ("cancel", "retry"):
        r = await svc.client.post(f"/v1/jobs/{job['id']}/{action}", headers=ACME_SUBMIT)
        assert r.status_code == 403, action
        assert r.json()["error"]["code"] == "forbidden"


# -- tenancy ----------------------------------------------------------------------------------


async def test_tenants_never_see_each_others_jobs(svc: Service) -> None:
    acme = await svc.submit(ACME_ADMIN)
    globex = await svc.submit(GLOBEX_ADMIN)
    job_id = acme["id"]
    for method, path in [
        ("GET", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/history"),
        ("GET", f"/v1/jobs/{job_id}/events"),
        ("POST", f"/v1/jobs/{job_id}/cancel"),
        ("POST", f"/v1/jobs/{job_id}/retry"),
    ]:
        r = await svc.client.request(method, path, headers=GLOBEX_ADMIN)
        assert r.status_code == 404, (method, path)
        assert r.json()["error"]["message"] == f"no job with id {job_id!r}"
    record = await (await svc.backend()).get(job_id)
    assert record is not None
    assert record.status == "queued"  # the cancel did nothing
    listed = (await svc.client.get("/v1/jobs", headers=GLOBEX_ADMIN)).json()["jobs"]
    assert [j["id"] for j in listed] == [globex["id"]]


async def test_idempotency_keys_are_per_tenant(svc: Service) -> None:
    acme = {**ACME_ADMIN, "Idempotency-Key": "k1"}
    globex = {**GLOBEX_ADMIN, "Idempotency-Key": "k1"}
    a = await svc.client.post("/v1/jobs", json={"task": "add", "args": [1, 2]}, headers=acme)
    b = await svc.client.post("/v1/jobs", json={"task": "add", "args": [3, 4]}, headers=globex)
    assert (a.status_code, b.status_code) == (202, 202)
    assert a.json()["id"] != b.json()["id"]


# -- request bodies ---------------------------------------------------------------------------


async def test_body_over_the_limit_is_413_by_header_and_by_stream(start: Start) -> None:
    svc = await start(tokens=TOKENS, config=ServiceConfig(max_body_bytes=1000))
    big = b'{"task": "add", "args": ["' + b"x" * 2000 + b'"]}'
    headers = {**ACME_ADMIN, "Content-Type": "application/json"}
    r = await svc.client.post("/v1/jobs", content=big, headers=headers)
    assert r.status_code == 413
    assert r.json()["error"]["details"] == {"max_bytes": 1000}

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: sent chunked
        for i in range(0, len(big), 100):
            yield big[i : i + 100]

    streamed = await svc.client.post("/v1/jobs", content=chunks(), headers=headers)
    assert streamed.status_code == 413
    small = await svc.client.post(
        "/v1/jobs", json={"task": "add", "args": [1, 2]}, headers=ACME_ADMIN
    )
    assert small.status_code == 202


async def test_default_limit_is_one_mebibyte(svc: Service) -> None:
    body = b'{"task": "add", "args": ["' + b"x" * (1024 * 1024) + b'"]}'
    headers = {**ACME_ADMIN, "Content-Type": "application/json"}
    r = await svc.client.post("/v1/jobs", content=body, headers=headers)
    assert r.status_code == 413


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_non_json_body_is_415(svc: Service, content_type: str | None) -> None:
    headers = dict(ACME_ADMIN)
    if content_type:
        headers["Content-Type"] = content_type
    r = await svc.client.post("/v1/jobs", content=b'{"task": "add"}', headers=headers)
    assert r.status_code == 415
    assert r.json()["error"]["code"] == "unsupported_media_type"


async def test_json_with_charset_is_accepted(svc: Service) -> None:
    headers = {**ACME_ADMIN, "Content-Type": "application/json; charset=utf-8"}
    r = await svc.client.post("/v1/jobs", content=b'{"task":"add","args":[1,2]}', headers=headers)
    assert r.status_code == 202


async def test_malformed_json_is_400(svc: Service) -> None:
    headers = {**ACME_ADMIN, "Content-Type": "application/json"}
    for body in (b'{"task": ', b"[1, 2", b"\xff\xfe"):
        r = await svc.client.post("/v1/jobs", content=body, headers=headers)
        assert r.status_code == 400, body
        assert r.json()["error"]["code"] == "malformed_json"


async def test_nan_is_refused(svc: Service) -> None:
    headers = {**ACME_ADMIN, "Content-Type": "application/json"}
    r = await svc.client.post(
        "/v1/jobs", content=b'{"task": "add", "args": [1, 2], "delay": NaN}', headers=headers
    )
    assert r.status_code in (400, 422)


# -- rate limits ------------------------------------------------------------------------------


async def test_rate_limit_is_per_tenant_429_with_retry_after(start: Start) -> None:
    svc = await start(tokens=TOKENS, config=ServiceConfig(rate_limit=0.5, rate_burst=3))
    codes = [(await svc.client.get("/v1/tasks", headers=ACME_READ)).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = await svc.client.get("/v1/jobs", headers=ACME_ADMIN)  # same tenant, other token
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "2"
    assert limited.json()["error"]["details"] == {"tenant": "acme"}
    assert (await svc.client.get("/v1/tasks", headers=GLOBEX_ADMIN)).status_code == 200


# -- token configuration ----------------------------------------------------------------------


def test_tokens_parse_inline_and_from_a_file(tmp_path: Path) -> None:
    inline = TokenTable.from_setting("t1=acme:admin, t2=globex:read")
    assert len(inline) == 2
    t1 = inline.lookup("t1")
    assert t1 is not None
    assert (t1.tenant, t1.role) == ("acme", Role.ADMIN)
    assert inline.lookup("t3") is None
    assert inline.lookup("t") is None
    path = tmp_path / "tokens"
    path.write_text("# ops\nt9=ops:submit\n\nt8=ops:read\n")
    from_file = TokenTable.from_setting(f"@{path}")
    t9 = from_file.lookup("t9")
    assert t9 is not None
    assert t9.role is Role.SUBMIT
    assert not TokenTable.from_setting(None).enabled
    assert not TokenTable.from_setting("  ").enabled


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("t1", "TOKEN=TENANT:ROLE"),
        ("t1=acme", "TOKEN=TENANT:ROLE"),
        ("t1=acme:owner", "must be admin, submit or read"),
        ("t1=ac me:read", "tenant"),
        ("t1=a:read,t1=b:read", "listed twice"),
        ("@/does/not/exist", "cannot read tokens file"),
    ],
)
def test_bad_token_configuration_names_the_problem(value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        TokenTable.from_setting(value)


def test_error_messages_never_show_a_whole_token() -> None:
    with pytest.raises(ConfigurationError) as info:
        TokenTable.from_setting("supersecrettoken=acme:owner")
    assert "supersecrettoken" not in str(info.value)
