"""Checks on the Redis server the backend connects to: reachable, new enough, and durable."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as rex

from offload.backends.redis.url import RedisURL
from offload.errors import BackendError, BackendUnavailable, ConfigurationError

log = logging.getLogger("offload.backends.redis")

MIN_VERSION = (6, 2)
_warned: set[str] = set()  # server problems already logged by this process


async def check_server(client: aioredis.Redis, target: RedisURL, *, strict: bool) -> None:
    """Refuse a server offload cannot use; warn (or, ``strict``, refuse) one that may lose jobs."""
    where = target.shown
    try:
        info = await client.info()
    except TypeError as exc:  # redis-py passes unknown URL options on to its connections
        raise ConfigurationError(
            f"Redis URL for {where} has an unknown option ({exc}); see redis-py's URL "
            "options, or offload's own: prefix, strict"
        ) from None
    except rex.AuthenticationError as exc:
        if not target.has_password:
            raise ConfigurationError(
                f"Redis at {where} needs a password; put it in the backend URL: "
                "redis://:password@host:6379/0"
            ) from None
        raise ConfigurationError(
            f"Redis at {where} rejected the credentials ({exc}); fix the user/password in "
            "the backend URL: redis://user:password@host:6379/0"
        ) from None
    except (rex.ConnectionError, rex.TimeoutError) as exc:
        raise BackendUnavailable(
            f"cannot reach Redis at {where} ({exc}); start redis-server there or fix the "
            "backend URL (OFFLOAD_BACKEND)"
        ) from None
    except rex.ResponseError as exc:
        if "NOAUTH" in str(exc):
            raise ConfigurationError(
                f"Redis at {where} needs a password; put it in the backend URL: "
                "redis://:password@host:6379/0"
            ) from None
        raise BackendError(f"Redis at {where} refused INFO: {exc}") from None
    version = str(info.get("redis_version", "0"))
    numbers = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if numbers < MIN_VERSION:
        raise ConfigurationError(
            f"Redis at {where} is version {version}; offload needs Redis "
            f"{'.'.join(map(str, MIN_VERSION))} or newer: upgrade the server"
        )
    problems = await _durability_problems(client, info)
    if problems and strict:
        raise ConfigurationError(
            f"Redis at {where} may lose jobs: {'; '.join(problems)} (refusing to start: strict)"
        )
    for problem in problems:
        if f"{where} {problem}" not in _warned:
            _warned.add(f"{where} {problem}")
            log.warning("Redis at %s may lose jobs: %s", where, problem)


async def _durability_problems(client: aioredis.Redis, info: Mapping[str, Any]) -> list[str]:
    """What in the server's settings can lose acknowledged jobs."""
    problems: list[str] = []
    policy = info.get("maxmemory_policy", "noeviction")
    if policy != "noeviction":
        problems.append(
            f"maxmemory-policy is {policy}, so Redis may evict job keys under memory pressure "
            "(set maxmemory-policy noeviction)"
        )
    if int(info.get("aof_enabled", 0)) != 1:
        try:
            save = (await client.config_get("save")).get("save", "")
        except rex.ResponseError:  # CONFIG is disabled (managed Redis): cannot tell
            return problems
        if save:
            problems.append(
                "only RDB snapshots are on: jobs acknowledged since the last snapshot are lost "
                "if Redis crashes (set appendonly yes)"
            )
        else:
            problems.append(
                "persistence is off: a Redis restart loses every job (set appendonly yes)"
            )
    return problems
