"""Backends: where jobs live. ``open_backend(url)`` picks one from its URL."""

from __future__ import annotations

from offload.backends._common import parse_url
from offload.backends.base import Backend
from offload.core.clock import Clock
from offload.errors import ConfigurationError

__all__ = ["Backend", "open_backend"]


def open_backend(url: str, *, clock: Clock | None = None, strict: bool = False) -> Backend:
    """Build (not yet connect) the backend a URL names.

    - ``sqlite:///relative.db``, ``sqlite:////abs/path.db``; option ``?synchronous=normal``
    - ``redis://host:6379/0``, ``rediss://`` (TLS) or ``unix:///path/redis.sock`` (needs
      ``pip install 'offload[redis]'``); options ``?prefix=`` (a
      namespace, default ``offload``) and ``?strict=true`` (as ``strict`` here: refuse a server
      that may lose jobs, instead of warning)
    - ``postgresql://user:pass@host/db`` (needs ``pip install 'offload[postgres]'``); options
      ``?schema=`` (default ``offload``) and ``?notify=false`` (poll, for PgBouncer)
    - ``memory://`` (a new, private in-process store)
    """
    parsed = parse_url(url)
    if parsed.scheme == "sqlite":
        from offload.backends.sqlite import SQLiteBackend

        return SQLiteBackend.from_url(url, clock=clock)
    if parsed.scheme == "memory":
        from offload.backends.memory import MemoryBackend

        return MemoryBackend(clock=clock)
    if parsed.scheme in ("redis", "rediss", "unix"):
        try:
            from offload.backends.redis import RedisBackend
        except ImportError:
            raise ConfigurationError(
                f"{url!r} needs the Redis client: pip install 'offload[redis]'"
            ) from None
        return RedisBackend.from_url(url, clock=clock, strict=strict)
    if parsed.scheme in ("postgresql", "postgres"):
        try:
            from offload.backends.postgres import PostgresBackend
        except ImportError:
            raise ConfigurationError(
                f"{url!r} needs psycopg: pip install 'offload[postgres]'"
            ) from None
        return PostgresBackend.from_url(url, clock=clock)
    raise ConfigurationError(
        f"unsupported backend URL scheme {parsed.scheme!r} in {url!r}; "
        "use sqlite:///path.db, redis://host:6379/0, postgresql://host/db or memory://"
    )
