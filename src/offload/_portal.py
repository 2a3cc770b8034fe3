"""A private event loop in a background thread, so synchronous code can call async code.

This is how the sync face of the client shares one implementation with the async face.

Under gevent's monkey patching (``monkey.patch_all()``, as in a gunicorn gevent worker),
``threading.Thread`` starts a greenlet, not a thread: a loop run there shares the OS thread
with the hub and with every request, so the backend's blocking calls (an SQLite commit's
fsync) hold up the whole server, and asyncio believes that loop is running in every other
greenlet (a view's own ``asyncio.run()`` fails). The portal then starts a real OS thread with
the functions gevent saved before patching and creates its loop inside that thread (asyncio
there runs on gevent's selector, driven by that thread's own hub); a caller waits by parking
only its greenlet on its hub (an ``async_`` watcher, which the portal thread may trigger):
other greenlets keep being served meanwhile.
"""

from __future__ import annotations

import _thread
import asyncio
import atexit
import os
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class Portal:
    """Runs coroutines on a background loop and blocks the caller for the result: the calling
    thread, or under gevent only the calling greenlet."""

    def __init__(self, name: str = "offload-portal") -> None:
        self.pid = os.getpid()  # a portal inherited through fork() has no thread here
        self.green = _gevent_patched()  # under gevent monkey patching
        start_new_thread, allocate_lock, self._get_ident = _os_thread_api(self.green)
        self._ident = -1
        ready, self._finished = allocate_lock(), allocate_lock()
        ready.acquire()
        self._finished.acquire()
        loops: list[asyncio.AbstractEventLoop] = []

        def main() -> None:
            self._ident = self._get_ident()
            loop = asyncio.new_event_loop()  # made here: under gevent, on this thread's hub
            loops.append(loop)
            ready.release()
            try:
                loop.run_forever()
            finally:
                # Join the executor's threads here: under gevent they are greenlets of this
                # thread's hub, which no other thread could ever join.
                loop.run_until_complete(loop.shutdown_default_executor())
                loop.close()
                if self.green:
                    _destroy_hub()
                self._finished.release()

        if self.green:
            start_new_thread(main, ())
        else:
            threading.Thread(target=main, name=name, daemon=True).start()
        ready.acquire()  # a real lock: the loop exists within a millisecond
        self._loop = loops[0]

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._get_ident() == self._ident:
            coro.close()
            raise RuntimeError("a sync offload call was made from inside offload's own loop")
        if self.green:
            return self._call_green(coro)
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _call_green(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the portal's loop, parking only the calling greenlet meanwhile."""
        waiter = _HubWaiter()
        tasks: list[asyncio.Task[T]] = []

        def start() -> None:
            task = self._loop.create_task(coro)
            task.add_done_callback(lambda _: waiter.wake())
            tasks.append(task)

        try:
            self._loop.call_soon_threadsafe(start)
            waiter.wait()
        except BaseException:  # the greenlet was killed or timed out: stop the work too
            self._loop.call_soon_threadsafe(lambda: [task.cancel() for task in tasks])
            raise
        finally:
            waiter.close()
        return tasks[0].result()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._finished.acquire()  # the loop is closed when the thread lets go of it


def before_interpreter_exit(fn: Callable[[], object]) -> None:
    """Call ``fn`` once the main thread is done, before thread pools shut down and other
    threads are joined. ``atexit`` runs after both: too late to close a backend whose close
    needs a thread pool, and under gevent after a join that never ends (the portal's pool
    threads are greenlets of its own hub)."""
    import concurrent.futures.thread  # noqa: F401  registers its hook first: ours runs before

    register = getattr(threading, "_register_atexit", None)  # what concurrent.futures uses
    if register is None:
        atexit.register(fn)
        return
    try:
        register(fn)
    except RuntimeError:  # already shutting down: nothing to hook any more
        pass


def _gevent_patched() -> bool:
    """Whether gevent has monkey-patched threading (never imports gevent itself)."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("threading"))


_ThreadApi = tuple[
    Callable[[Callable[[], None], tuple[()]], int],
    Callable[[], "_thread.LockType"],
    Callable[[], int],
]


def _os_thread_api(green: bool) -> _ThreadApi:
    """``start_new_thread``, ``allocate_lock`` and ``get_ident`` that deal in OS threads."""
    if not green:
        return _thread.start_new_thread, _thread.allocate_lock, _thread.get_ident
    from gevent.monkey import get_original

    names = ("start_new_thread", "allocate_lock", "get_ident")
    start, lock, ident = (get_original("_thread", name) for name in names)
    return start, lock, ident


def _destroy_hub() -> None:
    """Free the gevent hub (and its libev loop) that the portal thread's asyncio loop used."""
    from gevent import get_hub

    get_hub().destroy(destroy_loop=True)


class _HubWaiter:
    """Parks the calling greenlet on its hub until ``wake()`` is called, from any thread."""

    def __init__(self) -> None:
        from gevent import get_hub
        from gevent.event import Event

        self._event = Event()
        self._watcher = get_hub().loop.async_()  # started first: no wake-up can be missed
        self._watcher.start(self._event.set)

    def wake(self) -> None:
        self._watcher.send()  # thread-safe: wakes the waiter's hub

    def wait(self) -> None:
        self._event.wait()

    def close(self) -> None:
        self._watcher.close()
