"""Which frames of a blocked loop's stack the watchdog shows, and how it names a request."""

from __future__ import annotations

import asyncio
import os
import sysconfig
import traceback
from types import SimpleNamespace

from offload.integrations.stacks import describe, innermost_user_frames, is_user_code

ASYNCIO = os.path.dirname(asyncio.__file__)
SITE = sysconfig.get_paths()["purelib"]


def frame(filename: str, name: str, line: int = 1) -> traceback.FrameSummary:
    return traceback.FrameSummary(filename, line, name, lookup_line=False)


def stack(*frames: traceback.FrameSummary) -> traceback.StackSummary:
    return traceback.StackSummary.from_list(list(frames))


def names(frames: tuple[traceback.FrameSummary, ...]) -> list[str]:
    return [f.name for f in frames]


def test_user_code_is_what_is_not_installed() -> None:
    assert is_user_code("/srv/app/main.py")
    assert not is_user_code(f"{ASYNCIO}/events.py")
    assert not is_user_code(f"{SITE}/requests/sessions.py")
    assert not is_user_code("<frozen importlib._bootstrap>")


def test_loop_frames_are_cut_and_the_innermost_library_frame_kept() -> None:
    blocked = stack(
        frame("/srv/app/run.py", "<module>"),
        frame(f"{ASYNCIO}/base_events.py", "run_forever"),
        frame(f"{ASYNCIO}/base_events.py", "_run_once"),
        frame(f"{ASYNCIO}/events.py", "_run"),
        frame(f"{SITE}/starlette/routing.py", "app"),
        frame("/srv/app/views.py", "create_report"),
        frame("/srv/app/mail.py", "send"),
        frame(f"{SITE}/requests/sessions.py", "request"),
        frame(f"{os.path.dirname(ASYNCIO)}/socket.py", "recv_into"),
    )
    shown = innermost_user_frames(blocked, depth=6)
    assert names(shown) == ["create_report", "send", "recv_into"]
    assert names(innermost_user_frames(blocked, depth=1)) == ["send", "recv_into"]


def test_a_loop_between_callbacks_shows_where_it_was() -> None:
    idle = stack(
        frame("/srv/app/run.py", "<module>"),
        frame(f"{ASYNCIO}/runners.py", "run"),  # uvloop: the loop itself is C
    )
    assert names(innermost_user_frames(idle, depth=6)) == ["run"]


def test_describe_prefers_the_route_template() -> None:
    route = SimpleNamespace(path="/items/{item_id}")
    assert describe({"type": "http", "method": "GET", "path": "/items/7"}) == "GET /items/7"
    assert describe({"type": "http", "method": "PUT", "path": "/x", "route": route}) == (
        "PUT /items/{item_id}"
    )
    assert describe({"type": "websocket", "path": "/ws"}) == "WEBSOCKET /ws"
