"""``offload loadtest``: against the real API in a thread, and its refusals."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from offload import loadtest
from offload.cli import main
from offload.errors import ConfigurationError
from test_http_client import ADMIN, LiveServer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with LiveServer() as live:
        yield live


async def test_two_hundred_submissions_all_succeed(server: LiveServer) -> None:
    seen: list[tuple[int, int]] = []
    report = await loadtest.run(
        server.url, task="add", args=[1, 2], n=200, concurrency=20, token=ADMIN,
        progress=lambda done, total: seen.append((done, total)),
    )  # fmt: skip
    assert (report.sent, report.succeeded, report.errors) == (200, 200, {})
    assert not report.stopped_early
    assert len(report.latencies_ms) == 200
    assert seen[-1] == (200, 200)
    p = report.as_dict()["latency_ms"]
    assert 0 < p["p50"] <= p["p95"] <= p["p99"] <= p["max"]
    assert report.throughput > 0


async def test_errors_are_counted_by_status(server: LiveServer) -> None:
    report = await loadtest.run(server.url, task="nope", n=30, concurrency=5, token=ADMIN)
    assert (report.sent, report.succeeded, report.errors) == (30, 0, {"422": 30})
    unauthorized = await loadtest.run(server.url, task="add", args=[1, 2], n=5, concurrency=5)
    assert unauthorized.errors == {"401": 5}


async def test_the_time_limit_stops_it_early(server: LiveServer) -> None:
    report = await loadtest.run(
        server.url, task="add", args=[1, 2], n=1_000_000, concurrency=4, duration=0.3, token=ADMIN
    )
    assert report.stopped_early
    assert 0 < report.sent < 1_000_000
    assert report.sent == report.succeeded + sum(report.errors.values())


@pytest.mark.parametrize("url", ["http://10.1.2.3:8000", "https://example.com", "http://[::2]:80"])
async def test_remote_targets_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="loopback"):
        await loadtest.run(url, task="add", n=1)


def test_loopback_names_are_accepted() -> None:
    for url in ("http://127.0.0.1:1", "http://localhost:1", "http://[::1]:1", "http://127.8.0.1"):
        loadtest.check_target(url, allow_remote=False)
    loadtest.check_target("http://10.1.2.3", allow_remote=True)


def test_cli_refuses_a_remote_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["loadtest", "http://192.0.2.1:8000", "-n", "1"]) == 1
    err = capsys.readouterr().err
    assert "load tests target loopback addresses only" in err
    assert "--allow-remote" in err


def test_cli_json_report(server: LiveServer, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["loadtest", server.url, "--task", "add", "--args", "[1, 2]", "-n", "40", "-c", "8"]
    assert main([*argv, "--token", ADMIN, "--json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert set(report) == {
        "url", "requested", "concurrency", "sent", "succeeded", "failed", "errors", "elapsed_s",
        "stopped_early", "throughput_rps", "latency_ms",
    }  # fmt: skip
    assert (report["sent"], report["succeeded"], report["failed"]) == (40, 40, 0)
    assert set(report["latency_ms"]) == {"p50", "p95", "p99", "max"}


def test_cli_table_report(server: LiveServer, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["loadtest", server.url, "--task", "add", "--args", "[1, 2]", "-n", "10", "-c", "2"]
    assert main([*argv, "--token", ADMIN]) == 0
    out = capsys.readouterr().out
    assert "10 of 10 sent" in out
    assert "p95" in out
    assert "throughput" in out


def test_cli_rejects_args_that_are_not_an_array(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["loadtest", "http://127.0.0.1:1", "--args", '{"a": 1}']) == 1
    assert "JSON array" in capsys.readouterr().err
