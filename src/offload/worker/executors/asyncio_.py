"""The async executor: coroutines on the worker's own event loop.

Cancel is ``Task.cancel()``: the coroutine sees CancelledError at its next ``await``. Timeout is
the same, reported as JobTimeout. A coroutine that blocks the loop delays every other async job
(but not lease renewal, which runs on its own thread): use the thread executor for blocking code.
"""

from __future__ import annotations

import asyncio
from typing import Any

from offload.core.task import TaskSpec
from offload.errors import JobTimeout
from offload.worker.context import JobContext, bind, unbind


class AsyncExecutor:
    async def start(self) -> None:
        return None

    async def close(self, grace: float | None = None) -> None:
        return None

    async def run(
        self,
        spec: TaskSpec,
        ctx: JobContext,
        args: list[Any],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> Any:
        call_args, call_kwargs = spec.decode_arguments(args, kwargs)
        token = bind(ctx)
        try:
            if timeout is None:
                return await _call(spec, ctx, call_args, call_kwargs)
            async with asyncio.timeout(timeout) as scope:
                return await _call(spec, ctx, call_args, call_kwargs)
        except TimeoutError:
            if timeout is not None and scope.expired():
                raise JobTimeout(
                    f"task {spec.name} ran longer than its {timeout:g}s timeout"
                ) from None
            raise
        finally:
            unbind(token)


async def _call(
    spec: TaskSpec, ctx: JobContext, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    try:
        return await spec.func(*args, **kwargs)
    except asyncio.CancelledError:
        ctx.request_cancel()
        raise
