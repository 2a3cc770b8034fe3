"""The command line's grammar: every sub-command of ``offload``, its help and its arguments.

One table, read top to bottom in the order ``offload --help`` lists the commands; what each
command does is in :mod:`offload.cli`, which hands :func:`build_parser` a handler per name.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

from offload.core.states import State

Handler = Callable[[argparse.Namespace], int]
SubCommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Extension = Callable[[SubCommands, Callable[[argparse.ArgumentParser], None]], None]
#: ``add_argument``'s positional and keyword arguments, or one of the shared options below.
Arg = tuple[tuple[str, ...], dict[str, Any]] | str

STRICT = "--strict"  # refuse to start on a backend that may lose jobs
BACKEND = "--backend | --app"  # the store a command reads: a URL, or an App's


def _arg(*flags: str, **kwargs: Any) -> Arg:
    return flags, kwargs


_JSON = _arg("--json", action="store_true", help="print JSON")
_APP = _arg("--app", required=True, metavar="APP", help="module:attribute of the App")
_HOST = _arg("--host", help="address to listen on (default 127.0.0.1)")
_PORT = _arg("--port", type=int, help="port to listen on (default 8000)")

#: name -> (help, arguments), in the order the help lists them.
COMMANDS: dict[str, tuple[str, list[Arg]]] = {
    "worker": (
        "run a worker for APP (module:attribute)",
        [
            _arg("app", metavar="APP"),
            _arg("--queues", help="comma-separated queues, each optionally capped: pdf:2,default"),
            _arg("--concurrency", type=int, help="job slots per process (default 10)"),
            _arg("--processes", type=int, default=1, help="worker processes (default 1)"),
            _arg("--name", help="worker name, shown in job history (default: host name)"),
            _arg("--lease", type=float, help="lease seconds (default 30)"),
            _arg("--shutdown-grace", type=float, help="seconds to drain on SIGTERM (default 25)"),
            _arg("--parent-pid", type=int, help=argparse.SUPPRESS),  # set by the supervisor
            STRICT,
        ],
    ),
    "up": (
        "API, dashboard and a worker in one process (demo tasks)",
        [
            _arg("app", metavar="APP", nargs="?", help="module:attribute (default: the demo)"),
            _HOST,
            _PORT,
            _arg("--concurrency", type=int, help="job slots of the embedded worker"),
            STRICT,
        ],
    ),
    "serve": (
        "serve the HTTP API of APP",
        [
            _arg("app", metavar="APP"),
            _HOST,
            _PORT,
            _arg("--workers", type=int, default=1, help="uvicorn processes (default 1)"),
            STRICT,
        ],
    ),
    "submit": (
        "submit a job and print its id",
        [
            _arg("task", metavar="TASK"),
            _arg("args", nargs="*", metavar="ARG", help="JSON values (plain words are strings)"),
            _APP,
            _arg("--kw", action="append", default=[], metavar="NAME=VALUE", help="keyword arg"),
            _arg("--queue"),
            _arg("--priority", type=int),
            _arg("--delay", type=float, help="seconds before the job may run"),
            _arg("--idempotency-key"),
            _arg("--wait", action="store_true", help="wait for the job and print its result"),
            _arg("--timeout", type=float, help="with --wait: give up after this many seconds"),
            _JSON,
        ],
    ),
    "status": ("show one job", [_arg("id", metavar="ID"), BACKEND, _JSON]),
    "cancel": ("cancel a job", [_arg("id", metavar="ID"), BACKEND, _JSON]),
    "prune": (
        "delete ended jobs past their retention (result_ttl, age by outcome, max_finished)",
        [
            _arg("--batch", type=int, default=1000, help="jobs deleted per transaction (1000)"),
            BACKEND,
        ],
    ),
    "retry": (
        "run failed or cancelled jobs again, as new jobs",
        [
            _APP,
            _arg("--status", choices=["failed", "cancelled"], default="failed"),
            _arg("--task"),
            _arg("--queue"),
            _arg("--limit", type=int, default=100, help="most jobs to retry (100)"),
            _arg("--dry-run", action="store_true", help="only list the jobs it would retry"),
            _JSON,
        ],
    ),
    "jobs": (
        "list jobs, newest first",
        [
            _arg("--status", choices=[s.value for s in State]),
            _arg("--task"),
            _arg("--queue"),
            _arg("--limit", type=int, default=20),
            _JSON,
            BACKEND,
        ],
    ),
    "schedules": (
        "list the periodic tasks of APP and their next ticks",
        [
            _arg("app", metavar="APP"),
            _JSON,
        ],
    ),
    "loadtest": (
        "submit many jobs to an API and report the latency",
        [
            _arg("url", metavar="URL", help="the API's base URL, e.g. http://127.0.0.1:8000"),
            _arg("--task", default="send_email", help="task to submit (default send_email)"),
            _arg("--args", default='["a@example.com", "hi"]', help="JSON array of arguments"),
            _arg("-n", type=int, default=1000, help="jobs to submit (default 1000)"),
            _arg("-c", type=int, default=50, help="clients, one request in flight each (50)"),
            _arg("--rate", type=float, help="requests/s in all (default: each client at once)"),
            _arg("--duration", type=float, default=60.0, help="stop after this many seconds"),
            _arg("--token", help="bearer token of a role that may submit"),
            _arg("--allow-remote", action="store_true", help="allow a non-loopback URL"),
            _JSON,
        ],
    ),
    "doctor": (
        "scan an app's source for calls that block its event loop",
        [
            _arg("paths", nargs="+", metavar="PATH", help="files or folders (nothing is run)"),
            _arg("--format", choices=["text", "json"], default="text", help="default: text"),
            _arg("--select", default="", metavar="CODES", help="only these codes: OFF1,OFF201"),
            _arg("--ignore", default="", metavar="CODES", help="leave these codes out"),
        ],
    ),
}


def build_parser(
    handlers: Mapping[str, Handler], extensions: Sequence[Extension] = ()
) -> argparse.ArgumentParser:
    """The ``offload`` parser; each command's namespace carries its handler as ``func``.

    ``extensions`` add commands that declare themselves (``offload top``): each is called with
    the sub-command table and :func:`backend_options`."""
    parser = argparse.ArgumentParser(prog="offload", description="Background jobs for web apps.")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    for name, (helptext, args) in COMMANDS.items():
        p = sub.add_parser(name, help=helptext)
        for arg in args:
            if isinstance(arg, tuple):
                flags, kwargs = arg
                p.add_argument(*flags, **kwargs)
            elif arg == STRICT:
                _strict_option(p)
            else:
                _backend_options(p)
        p.set_defaults(func=handlers[name])
    for extend in extensions:
        extend(sub, _backend_options)
    return parser


def _strict_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse to start if the backend's server may lose jobs (Redis eviction or no "
        "persistence; default: warn)",
    )


def _backend_options(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--backend", help="backend URL (default: $OFFLOAD_BACKEND or sqlite)")
    group.add_argument("--app", metavar="APP", help="use the backend of this App")
