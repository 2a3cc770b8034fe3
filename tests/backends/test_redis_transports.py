"""Redis over TLS (``rediss://``) and over a Unix socket (``unix://``): submits from sync and
async code and a worker's claims and finishes all go through the URL's transport."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import offload
from rediskit import RedisServer
from upkit import free_port


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server that speaks TLS on its own port (a self-signed certificate for
    127.0.0.1); yields the ``rediss://`` URL that trusts that certificate."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    files = ("-keyout", str(key), "-out", str(cert))
    subject = ("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1")
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    subprocess.run([*command, *files, *subject], check=True, capture_output=True)
    port = free_port()
    options = ("--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key))
    srv = RedisServer(
        folder / "redis",
        appendonly=False,
        extra=(*options, "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"),
    )
    srv.start()
    try:
        yield f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={cert}"
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def unix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server that also listens on a Unix socket; yields its ``unix://`` URL."""
    folder = tmp_path_factory.mktemp("unix")
    socket = folder / "redis.sock"
    srv = RedisServer(folder, appendonly=False, extra=("--unixsocket", str(socket)))
    srv.start()
    try:
        yield f"unix://{socket}"
    finally:
        srv.stop()


def test_a_plain_client_cannot_talk_to_the_tls_port(tls: str) -> None:
    """The TLS fixture really is TLS-only on that port (so the tests below prove TLS works)."""
    port = int(tls.split(":")[2].split("/")[0])
    plain = redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2)
    with pytest.raises(redis.exceptions.ConnectionError):
        plain.ping()
    plain.close()


@pytest.mark.parametrize("transport", ["tls", "unix"])
async def test_submits_and_a_worker_go_through_the_urls_transport(
    transport: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = request.getfixturevalue(transport) + ("&" if transport == "tls" else "?")
    app = offload.App(url + f"prefix=transport-{transport}")

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    try:
        from_thread = await asyncio.to_thread(add.submit, 1, 2)  # the sync face's own pool
        from_loop = await add.asubmit(3, 4)
        worker = offload.Worker(app, concurrency=2)
        running = asyncio.create_task(worker.run())
        try:
            assert await from_thread.aresult(timeout=10) == 3
            assert await from_loop.aresult(timeout=10) == 7
        finally:
            worker.stop()
            await asyncio.wait_for(running, 10)
    finally:
        await asyncio.to_thread(app.close)
        await app.aclose()
