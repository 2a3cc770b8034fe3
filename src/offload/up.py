"""``offload serve`` and ``offload up``: the HTTP API, alone or with an embedded worker.

This is where the service and the worker meet in one process; ``offload.service`` itself never
imports the worker (DESIGN.md section 3).

Both run the way an API that must answer in milliseconds should: on uvloop and httptools when
installed (the ``server`` extra brings them), without uvicorn's access log (offload logs every
request itself, at DEBUG, with its request id), and with the heap that the app built at start
frozen out of the garbage collector's full collections, which would otherwise walk tens of
thousands of long-lived objects (modules, routes, models) in the middle of requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import os
import signal
import socket
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI

from offload.api.auth import TokenTable
from offload.backends.sqlite.check import require_sound
from offload.client import App
from offload.errors import BackendUnavailable, ConfigurationError
from offload.loader import load_app
from offload.service.app import create_app
from offload.service.config import ServiceConfig
from offload.settings import Settings
from offload.worker.worker import Worker

log = logging.getLogger("offload.up")

#: The app ``offload up`` serves when none is named: one task per executor.
DEMO_APP = "offload.demo:app"
#: the address ``offload serve --workers N`` binds, for the bind check of each process
_HOST_VAR = "OFFLOAD_SERVE_HOST"


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


def build_api(app: App, host: str, *, not_ready: Callable[[], str | None] | None = None) -> FastAPI:
    """The HTTP API of ``app``, checked against ``host`` with the very token table it serves.

    The bind check reads the API's own tokens (not the environment), so an App built with
    ``Settings(...)`` that carry no tokens cannot listen beyond loopback unauthenticated.
    """
    config = ServiceConfig(bound_to_loopback=_is_loopback(host))
    api = create_app(app, config=config, not_ready=not_ready)
    tokens: TokenTable = api.state.service.tokens
    if not tokens.enabled and not _is_loopback(host) and os.environ.get("OFFLOAD_TOKENS"):
        raise ConfigurationError(
            f"refusing to listen on {host}: OFFLOAD_TOKENS is set, but the App's settings have "
            "no tokens (it was built with Settings(...) that do not read the environment), so "
            "the API would accept anyone. Pass tokens=... in its Settings, or use "
            "Settings.from_env()"
        )
    check_bind(host, tokens)
    return api


def asgi_from_env() -> FastAPI:
    """uvicorn factory for ``offload serve --workers N``: the app named by ``$OFFLOAD_APP``,
    bind-checked again against ``$OFFLOAD_SERVE_HOST`` in each process."""
    api = build_api(load_app(os.environ["OFFLOAD_APP"]), os.environ.get(_HOST_VAR, "127.0.0.1"))
    freeze_heap()
    return api


def freeze_heap() -> None:
    """Collect garbage once, then exempt every object alive now from later collections.

    Call it once the app is built: what exists then lives as long as the process, and a full
    collection no longer has to walk it (the pause drops from tens of milliseconds to a few).
    """
    gc.collect()
    gc.freeze()


def serve(app_path: str, *, host: str, port: int, workers: int) -> None:
    """Run the HTTP API of ``app_path`` (several uvicorn processes with ``workers`` > 1)."""
    check_port(host, port)
    app = load_app(app_path)
    api = build_api(app, host)  # the parent refuses before any child starts
    limits = http_limits(app.settings)
    if workers > 1:
        os.environ["OFFLOAD_APP"] = app_path
        os.environ[_HOST_VAR] = host
        uvicorn.run(
            "offload.up:asgi_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=False,
            **limits,
        )
    else:
        freeze_heap()
        uvicorn.run(api, host=host, port=port, access_log=False, **limits)


def http_limits(settings: Settings) -> dict[str, Any]:
    """uvicorn's connection limits from the settings (``OFFLOAD_HTTP_*``).

    uvicorn has no timeout for reading a request's headers or body: a public service belongs
    behind a proxy that has them (README, settings); these bound what reaches uvicorn.
    """
    return {
        "limit_concurrency": settings.http_max_connections,
        "timeout_keep_alive": settings.http_keep_alive,
    }


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it is installed (as uvicorn would choose), else None: asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


class _Server(uvicorn.Server):
    """uvicorn's server, with signals left to ``up`` (which must also stop the worker)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def run_up(app_path: str | None, *, host: str, port: int, concurrency: int | None) -> None:
    """:func:`up` on a new event loop (uvloop's when installed), until SIGINT/SIGTERM."""
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(up(app_path, host=host, port=port, concurrency=concurrency))


async def up(app_path: str | None, *, host: str, port: int, concurrency: int | None) -> None:
    """API, dashboard and a worker in this process, until SIGINT/SIGTERM.

    It binds its port and opens its backend before anything starts, so a busy port or a bad
    database is one clear error (a backend that is merely down is waited for: readiness says
    503 until the embedded worker runs). The first signal stops the server and lets running
    jobs finish for ``shutdown_grace``; a second one releases them at once. Nothing is lost
    either way.
    """
    path = app_path or DEMO_APP
    app = load_app(path)
    worker = Worker(app, concurrency=concurrency, app_path=path, name="up")
    api = build_api(app, host, not_ready=lambda: None if worker.serving else _NO_WORKER)
    sock = bind(host, port)
    await open_backend(app)
    server = _Server(
        uvicorn.Config(api, lifespan="on", access_log=False, **http_limits(app.settings))
    )
    freeze_heap()

    def on_signal(sig: signal.Signals) -> None:
        first = not server.should_exit
        log.info("received %s: %s", sig.name, "shutting down" if first else "stopping now")
        server.should_exit = True
        server.force_exit = not first
        worker.stop(graceful=first)

    def on_worker_end(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and not server.should_exit:
            log.error("the embedded worker stopped: %s; shutting down", task.exception())
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    working = asyncio.create_task(worker.run())
    working.add_done_callback(on_worker_end)
    log.info("offload up: %s on http://%s:%d with an embedded worker", path, host, port)
    try:
        await server.serve(sockets=[sock])
    finally:
        worker.stop()
        await working


_NO_WORKER = "the embedded worker is not running (yet): see the log"


def check_port(host: str, port: int) -> None:
    """Refuse a port out of range (uvicorn would listen on it modulo 65536)."""
    if not 0 <= port <= 65535:
        raise ConfigurationError(
            f"cannot listen on {host}:{port}: a port is a number from 0 to 65535"
        )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or one ConfigurationError that says why not."""
    check_port(host, port)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; is another server using "
            "it? Choose another with --port"
        ) from None
    sock.set_inheritable(True)
    return sock


async def open_backend(app: App) -> None:
    """Open the backend now, so a wrong one (a bad URL, an unopenable or corrupted SQLite file)
    is one clear error; a backend that is only unavailable is waited for by the worker."""
    require_sound(app.settings.backend)
    try:
        await app.backend()
    except BackendUnavailable as exc:
        log.warning("backend unavailable at start: %s; waiting for it", exc)
