"""The offload App as a FastAPI dependency: ``OffloadApp``, ``get_app`` and ``use_app``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from starlette.applications import Starlette

from offload.client import App
from offload.errors import ConfigurationError


def register(api: Starlette, app: App) -> None:
    apps: list[App] = getattr(api.state, "offload_apps", [])
    if not any(known is app for known in apps):
        api.state.offload_apps = [*apps, app]


async def get_app(request: Request) -> App:
    """The offload App that :func:`mount` or :func:`lifespan` attached to this application.

    Override it in tests with ``api.dependency_overrides[get_app] = ...``.
    """
    apps: list[App] = getattr(request.app.state, "offload_apps", [])
    if len(apps) != 1:
        found = "none" if not apps else f"{len(apps)} of them"
        raise ConfigurationError(
            f"OffloadApp needs exactly one offload App attached to the application ({found}): "
            "use mount() or lifespan(), or Depends(use_app(app)) to name one"
        )
    return apps[0]


#: ``async def create(jobs: OffloadApp): job = await jobs.asubmit_name("render", [42])``
OffloadApp = Annotated[App, Depends(get_app)]


def use_app(app: App) -> Callable[[], Awaitable[App]]:
    """A dependency that gives endpoints ``app``: ``Annotated[offload.App,
    Depends(use_app(jobs))]``. Async, so FastAPI calls it without a thread hop; keep the
    returned function to override it in tests."""

    async def offload_app() -> App:
        return app

    return offload_app
