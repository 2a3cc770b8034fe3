"""Reading another thread's stack: which frames are the application's, which request ran."""

from __future__ import annotations

import asyncio
import os
import sysconfig
import traceback
from collections.abc import Mapping, MutableMapping
from functools import cache
from types import FrameType
from typing import Any

Scope = MutableMapping[str, Any]

_ASYNCIO = os.path.join(os.path.dirname(asyncio.__file__), "")
_LOOP_FUNCTIONS = frozenset({"_run", "_run_once", "run_forever", "run_until_complete", "run"})
_OWN = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))  # the offload package


@cache
def _library_folders() -> tuple[str, ...]:
    """Folders of the standard library, installed packages and offload itself."""
    paths = sysconfig.get_paths()
    folders = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    folders |= {os.path.realpath(f) for f in folders} | {_OWN}
    return tuple(os.path.join(f, "") for f in folders)


def is_user_code(filename: str) -> bool:
    """Whether ``filename`` is the application's code: not the standard library, an installed
    package, offload, or a frozen/generated module (``<frozen ...>``, ``<string>``)."""
    if filename.startswith("<"):
        return False
    return not filename.startswith(_library_folders())


def innermost_user_frames(
    stack: traceback.StackSummary, depth: int
) -> tuple[traceback.FrameSummary, ...]:
    """The ``depth`` innermost frames of user code in the callback the loop was running, then
    the innermost frame of all when it is library code (where the call actually waits:
    ``socket.recv_into``, ``ssl.read``). The frames that run the loop itself are left out;
    when no callback was running, the one innermost frame is kept (see ``in_the_loop``)."""
    if stack and in_the_loop(stack[-1]):
        return (stack[-1],)
    stack = _callback_frames(stack)
    user = [f for f in stack if is_user_code(f.filename)]
    if not user:
        return tuple(stack[-depth:])
    shown = user[-depth:]
    if stack[-1] is not user[-1]:
        shown.append(stack[-1])
    return tuple(shown)


def in_the_loop(frame: traceback.FrameSummary) -> bool:
    """Whether ``frame`` is asyncio's loop machinery (``Handle._run``, ``_run_once``, or
    ``Runner.run`` when the loop is written in C, as uvloop is) rather than a callback."""
    return frame.name in _LOOP_FUNCTIONS and frame.filename.startswith(_ASYNCIO)


def _callback_frames(stack: traceback.StackSummary) -> traceback.StackSummary:
    """The frames above the last one of the loop machinery: the callback that blocked."""
    for i in range(len(stack) - 1, -1, -1):
        if in_the_loop(stack[i]):
            return traceback.StackSummary.from_list(stack[i + 1 :])
    return stack


def format_frames(frames: tuple[traceback.FrameSummary, ...]) -> str:
    return "".join(traceback.format_list(list(frames))).rstrip("\n") or "  (no Python frames)"


def endpoint_of(frame: FrameType, requests: Mapping[int, Scope]) -> str | None:
    """``"GET /items/{item_id}"`` for the request running at ``frame``; None when unknown.

    ``requests`` maps ``id(scope)`` to the scope of each request in flight. ASGI code passes the
    scope down in a variable named ``scope`` (the middleware's own call, Starlette's and
    FastAPI's layers, the task a ``BaseHTTPMiddleware`` runs the endpoint in), so the innermost
    frame on the stack holding one of those scopes names the request. When no frame does, the
    one request in flight is named, if there is just one.
    """
    try:
        in_flight = dict(requests)
    except RuntimeError:  # the dict changed meanwhile: the loop thread is not stuck after all
        return None
    current: FrameType | None = frame
    while current is not None:
        if _has_scope_variable(current):
            scope = current.f_locals.get("scope")
            if in_flight.get(id(scope)) is scope and scope is not None:
                return describe(scope)
        current = current.f_back
    if len(in_flight) == 1:
        return describe(next(iter(in_flight.values())))
    return None


def _has_scope_variable(frame: FrameType) -> bool:
    code = frame.f_code
    return "scope" in code.co_varnames or "scope" in code.co_freevars


def describe(scope: Mapping[str, Any]) -> str:
    """Method and route template of an ASGI scope (the raw path before routing)."""
    method = scope.get("method") or str(scope.get("type", "")).upper()
    route = getattr(scope.get("route"), "path", None)
    return f"{method} {route if isinstance(route, str) else scope.get('path', '?')}"
