"""The dashboard at ``/``: static files with a strict CSP, and a real browser run over it."""

from __future__ import annotations

import importlib.util
import time
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest
from servicekit import Service

from offload.service.dashboard import CSP
from upkit import RunningUp

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
XSS = "<script>window.__pwned=1</script>"


def assert_hardened(response: httpx.Response) -> None:
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_index_is_html_with_a_strict_csp(anon: Service) -> None:
    response = await anon.client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert_hardened(response)
    assert CSP == (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    assert '<script src="/dashboard/app.js"' in response.text
    assert "<script>" not in response.text  # no inline script: the CSP would refuse it


@pytest.mark.parametrize("path", ["/dashboard", "/dashboard/"])
async def test_the_dashboard_path_serves_the_jobs_page(anon: Service, path: str) -> None:
    response = await anon.client.get(path)
    assert response.status_code == 200
    assert response.text == (await anon.client.get("/")).text
    assert '<a href="/" class="current">Jobs</a>' in response.text
    assert_hardened(response)
    assert (await anon.client.head(path)).status_code == 200


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("app.js", "text/javascript; charset=utf-8"), ("style.css", "text/css; charset=utf-8")],
)
async def test_static_files_have_their_types_and_the_csp(
    anon: Service, name: str, content_type: str
) -> None:
    response = await anon.client.get(f"/dashboard/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert_hardened(response)
    assert response.content


async def test_unknown_static_file_is_404(anon: Service) -> None:
    for path in ("/dashboard/nope.js", "/dashboard/..%2Fapp.py", "/dashboard/__init__.py"):
        response = await anon.client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"


async def test_dashboard_needs_no_token_but_the_api_does(svc: Service) -> None:
    assert (await svc.client.get("/")).status_code == 200
    assert (await svc.client.get("/dashboard/app.js")).status_code == 200
    assert (await svc.client.get("/v1/jobs")).status_code == 401


def test_the_page_never_uses_inner_html() -> None:
    source = resources.files("offload.service.dashboard").joinpath("app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in source


# ---- a real browser ---------------------------------------------------------------------


@pytest.fixture
def server(offload_up: RunningUp) -> str:
    """The base URL of a real ``offload up`` (see tests/conftest.py)."""
    return offload_up.base


@pytest.fixture
def browser_available() -> None:
    """Skip (before starting a server) when Chromium or Playwright is missing."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no {CHROMIUM}: install it with `apt-get install -y chromium`")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("no playwright module: install it with `pip install playwright`")


@pytest.mark.slow
def test_browser_follows_a_job_and_shows_its_data_as_text(
    browser_available: None, server: str
) -> None:
    from playwright.sync_api import expect, sync_playwright

    text = f"{XSS} hello from the browser test"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server + "/")
            expect(page.locator("#workers tbody")).to_contain_text("up")
            created = httpx.post(
                f"{server}/v1/jobs", json={"task": "summarize", "args": [text]}, timeout=5
            )
            assert created.status_code == 202, created.text
            job_id = created.json()["id"]
            row = page.locator(f'#jobs tbody tr[data-id="{job_id}"]')
            row.click(timeout=10_000)  # waits for the 2 s refresh to bring the row
            expect(page.locator("#job-id")).to_have_text(job_id)
            expect(page.locator("#job-percent")).to_have_text("100%", timeout=15_000)
            expect(page.locator("#job-status")).to_have_text("succeeded")
            expect(page.locator("#job-args")).to_contain_text(text)
            expect(page.locator("#history tbody")).to_contain_text("succeeded")
            expect(row).to_contain_text(XSS)
            assert page.evaluate("typeof window.__pwned") == "undefined"
            assert page.locator("#job script").count() == 0
            # a refused action shows the API's message (the button is disabled: force it)
            assert page.locator("#retry").is_disabled()
            # Enable and click in one script: a live refresh in between would disable it again.
            page.evaluate(
                "const button = document.querySelector('#retry');"
                "button.disabled = false; button.click();"
            )
            expect(page.locator("#job-message")).to_contain_text("cannot become retried")
            assert errors == []
        finally:
            browser.close()


@pytest.fixture
def rare_heartbeats(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lease 300 s: the worker renews and heartbeats every 100 s, so a heartbeat's count of
    running jobs is stale for the whole test (the default renews every 10 s). The jobs still
    running at the end are released at once."""
    monkeypatch.setenv("OFFLOAD_LEASE_SECONDS", "300")
    monkeypatch.setenv("OFFLOAD_SHUTDOWN_GRACE", "0")


def api_get(server: str, path: str) -> Any:
    response = httpx.get(server + path, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.slow
def test_browser_numbers_match_the_api(
    browser_available: None, rare_heartbeats: None, offload_up: RunningUp
) -> None:
    from playwright.sync_api import expect, sync_playwright

    server = offload_up.base
    quick = httpx.post(f"{server}/v1/jobs", json={"task": "send_email", "args": ["a@b.c", "hi"]})
    for _ in range(3):  # 30 s each: running for the whole test
        r = httpx.post(f"{server}/v1/jobs", json={"task": "summarize", "args": ["x", 150]})
        assert r.status_code == 202, r.text
    deadline = time.monotonic() + 20
    while True:
        queues = api_get(server, "/v1/queues")["queues"]
        running = sum(q["counts"]["running"] for q in queues)
        done = api_get(server, f"/v1/jobs/{quick.json()['id']}")["status"] == "succeeded"
        if running == 3 and done:
            break
        assert time.monotonic() < deadline, queues
        time.sleep(0.1)
    [worker] = api_get(server, "/v1/workers")["workers"]
    assert worker["running"] == 3  # counted now, not at the heartbeat of 0

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(server + "/")
            default = page.locator("#queues tbody tr", has_text="default")
            expect(default.locator("td").nth(3)).to_have_text("3")  # the running column
            worker_row = page.locator("#workers tbody tr").first
            expect(worker_row.locator("td").nth(4)).to_have_text(f"3/{worker['concurrency']}")
            throughput = page.locator("#throughput")
            expect(throughput).to_have_attribute("data-ticks", "2,1,0")  # was "1,1,0"
            values = throughput.get_attribute("data-values") or ""
            assert sum(int(v) for v in values.split()) == 1  # the one finished job
        finally:
            browser.close()
