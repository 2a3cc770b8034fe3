"""``offload loadtest``: against the real API in a thread, and its refusals."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

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


#: Answers in turn: sized by Content-Length, chunked (with a trailer), a 422 that ends with the
#: connection, and one sized answer after which the server closes the idle connection.
_ANSWERS = (
    (b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}", False),
    (
        b"HTTP/1.1 202 Accepted\r\ntransfer-encoding: chunked\r\n\r\n"
        b"1;x=y\r\n{\r\n1\r\n}\r\n0\r\nx-trailer: 1\r\n\r\n",
        False,
    ),
    (b"HTTP/1.1 422 Unprocessable Entity\r\nconnection: close\r\n\r\n{}", True),
    (b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n", True),
)


@pytest.fixture
async def framing_server() -> AsyncIterator[tuple[str, list[int]]]:
    """A raw HTTP/1.1 server answering ``_ANSWERS`` in turn; yields its URL and connections."""
    answered = 0
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered
        connections.append(len(connections))
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                )
                await reader.readexactly(length)
                answer, then_close = _ANSWERS[answered % len(_ANSWERS)]
                answered += 1
                writer.write(answer)
                await writer.drain()
                if then_close:
                    break
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", connections


async def test_two_hundred_submissions_all_succeed(server: LiveServer) -> None:
    seen: list[tuple[int, int]] = []
    report = await loadtest.run(
        server.url,
        task="add",
        args=[1, 2],
        n=200,
        concurrency=20,
        token=ADMIN,
        progress=lambda done, total: seen.append((done, total)),
    )
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


async def test_a_rate_spaces_the_requests_out(server: LiveServer) -> None:
    report = await loadtest.run(
        server.url, task="add", args=[1, 2], n=50, concurrency=10, rate=200.0, token=ADMIN
    )
    assert (report.sent, report.succeeded, report.rate) == (50, 50, 200.0)
    # the last request is due 49/200 s after the first: no schedule can finish sooner
    assert report.elapsed >= 49 / 200
    assert "at 200/s" in report.table()


async def test_answers_of_every_framing_and_closed_connections(
    framing_server: tuple[str, list[int]],
) -> None:
    url, connections = framing_server
    report = await loadtest.run(url, task="add", n=12, concurrency=1)
    assert (report.sent, report.succeeded, report.errors) == (12, 9, {"422": 3})
    assert len(connections) == 6  # a new one after each close, and no error for it


async def test_a_service_that_is_not_there_counts_as_errors() -> None:
    with socket.socket() as sock:  # a port that refuses connections
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    report = await loadtest.run(f"http://127.0.0.1:{port}", task="add", n=6, concurrency=2)
    assert (report.sent, report.succeeded, report.errors) == (6, 0, {"ConnectionRefusedError": 6})


@pytest.mark.parametrize(("option", "value"), [("rate", 0.0), ("concurrency", 0), ("n", 0)])
async def test_nonsense_options_are_refused(option: str, value: float) -> None:
    with pytest.raises(ConfigurationError, match="at least 1"):
        await loadtest.run("http://127.0.0.1:1", task="add", **{option: value})  # type: ignore[arg-type]


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


def test_only_http_urls_are_targets() -> None:
    for url in ("ftp://127.0.0.1/", "127.0.0.1:8000", "http://"):
        with pytest.raises(ConfigurationError, match="not an http"):
            loadtest.check_target(url, allow_remote=True)


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
        "url",
        "requested",
        "concurrency",
        "rate_rps",
        "sent",
        "succeeded",
        "failed",
        "errors",
        "elapsed_s",
        "stopped_early",
        "throughput_rps",
        "latency_ms",
    }
    assert (report["sent"], report["succeeded"], report["failed"]) == (40, 40, 0)
    assert report["rate_rps"] is None


def test_cli_rate(server: LiveServer, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["loadtest", server.url, "--task", "add", "--args", "[1, 2]", "-n", "20", "-c", "4"]
    assert main([*argv, "--rate", "500", "--token", ADMIN, "--json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert (report["rate_rps"], report["succeeded"], report["failed"]) == (500, 20, 0)
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
