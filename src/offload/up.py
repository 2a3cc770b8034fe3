"""``offload serve`` and ``offload up``: the HTTP API, alone or with an embedded worker.

This is where the service and the worker meet in one process; ``offload.service`` itself never
imports the worker (DESIGN.md section 3).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from offload.errors import ConfigurationError
from offload.loader import load_app
from offload.service.app import create_app
from offload.service.auth import TokenTable
from offload.settings import Settings
from offload.worker.worker import Worker

log = logging.getLogger("offload.up")

#: The app ``offload up`` serves when none is named: one task per executor.
DEMO_APP = "offload.demo:app"


def check_bind(host: str, tokens: TokenTable) -> None:
    """Refuse to listen beyond loopback when no API token is configured."""
    if tokens.enabled or _is_loopback(host):
        return
    raise ConfigurationError(
        f"refusing to listen on {host} without API tokens: anyone who can reach it could run "
        "jobs. Set OFFLOAD_TOKENS (e.g. 'secret=acme:admin') or bind to 127.0.0.1"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def asgi_from_env() -> FastAPI:
    """uvicorn factory for ``offload serve --workers N``: the app named by ``$OFFLOAD_APP``."""
    return create_app(load_app(os.environ["OFFLOAD_APP"]))


def serve(app_path: str, *, host: str, port: int, workers: int, settings: Settings) -> None:
    """Run the HTTP API of ``app_path`` (several uvicorn processes with ``workers`` > 1)."""
    check_bind(host, TokenTable.from_setting(settings.tokens))
    if workers > 1:
        os.environ["OFFLOAD_APP"] = app_path
        uvicorn.run("offload.up:asgi_from_env", factory=True, host=host, port=port,
                    workers=workers)  # fmt: skip
    else:
        uvicorn.run(create_app(load_app(app_path)), host=host, port=port)


class _Server(uvicorn.Server):
    """uvicorn's server, with signals left to ``up`` (which must also stop the worker)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def up(app_path: str | None, *, host: str, port: int, concurrency: int | None) -> None:
    """API, dashboard and a worker in this process, until SIGINT/SIGTERM.

    The first signal stops the server and lets running jobs finish for ``shutdown_grace``;
    a second one releases them at once. Nothing is lost either way.
    """
    path = app_path or DEMO_APP
    app = load_app(path)
    check_bind(host, TokenTable.from_setting(app.settings.tokens))
    server = _Server(uvicorn.Config(create_app(app), host=host, port=port, lifespan="on"))
    worker = Worker(app, concurrency=concurrency, app_path=path, name="up")

    def on_signal(sig: signal.Signals) -> None:
        first = not server.should_exit
        log.info("received %s: %s", sig.name, "shutting down" if first else "stopping now")
        server.should_exit = True
        server.force_exit = not first
        worker.stop(graceful=first)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    working = asyncio.create_task(worker.run())
    log.info("offload up: %s on http://%s:%d with an embedded worker", path, host, port)
    try:
        await server.serve()
    finally:
        worker.stop()
        await working
