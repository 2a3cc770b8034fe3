"""``task.options(connection=conn)`` / ``task.options(session=session)``: a submit that joins
the caller's own PostgreSQL transaction (see docs/guide/postgres.md, "Transactional enqueue").

The job exists only if the caller commits, and workers see it only after the commit. The app's
backend must be PostgreSQL: it is opened once (which applies the schema's migrations) and gives
the schema, the wake-up channel and the clock; the insert itself runs on the caller's connection.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from offload.core.job import NewJob
from offload.core.options import SubmitOptions
from offload.errors import ConfigurationError
from offload.jobs import Job, JobApp

if TYPE_CHECKING:
    from offload.backends.postgres.backend import PostgresBackend

#: The opened PostgreSQL backend of each app that submitted synchronously in a transaction.
_BACKENDS: weakref.WeakKeyDictionary[Any, PostgresBackend] = weakref.WeakKeyDictionary()


def submit(app: JobApp, new: NewJob, options: SubmitOptions) -> Job:
    """Store ``new`` in the transaction of ``options.connection`` or ``options.session``."""
    from offload.backends.postgres import transactional as pgtx

    if options.session is not None:
        conn = pgtx.session_connection(options.session)
    else:
        conn = pgtx.sync_connection(options.connection)
    backend = _BACKENDS.get(app)
    if backend is None:
        backend = _postgres(app.run_sync(app.backend()))
        _BACKENDS[app] = backend
    [record] = pgtx.submit_sync(conn, backend.names, _fixed_now(backend), [new])
    return Job(app, record)


async def asubmit(app: JobApp, new: NewJob, options: SubmitOptions) -> Job:
    """:func:`submit` on an async connection or an ``AsyncSession``."""
    from offload.backends.postgres import transactional as pgtx

    if options.session is not None:
        conn = await pgtx.async_session_connection(options.session)
    else:
        conn = pgtx.async_connection(options.connection)
    backend = _postgres(await app.backend())
    [record] = await pgtx.submit_async(conn, backend.names, _fixed_now(backend), [new])
    return Job(app, record)


def _postgres(backend: object) -> PostgresBackend:
    wrong = ConfigurationError(
        "connection= and session= submit inside a PostgreSQL transaction: the app's backend "
        f"must be postgresql://..., not {type(backend).__name__}"
    )
    try:
        from offload.backends.postgres.backend import PostgresBackend
    except ImportError:  # psycopg is not installed: the backend cannot be PostgreSQL either
        raise wrong from None
    if not isinstance(backend, PostgresBackend):
        raise wrong
    return backend


def _fixed_now(backend: PostgresBackend) -> float | None:
    return None if backend.clock is None else backend.clock.now()
