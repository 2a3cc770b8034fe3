"""The connection class of the Redis backend: redis-py's, with commands packed by hiredis.

redis-py's synchronous connection packs commands with hiredis's C packer when hiredis is
installed; its asyncio connection always packs them in Python, which re-joins the growing
buffer once per argument. A worker sends a script call per claim and per batch of outcomes,
and that packing was the largest single cost of a no-op job in the worker's profile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _pack
except ImportError:  # pragma: no cover - the redis extra installs hiredis
    _pack = None


class PackedConnection(aioredis.Connection):
    """A TCP connection whose commands are packed by hiredis (one buffer per command)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        head = args[0]
        if isinstance(head, str) and " " in head:  # "CONFIG GET": separate words, as redis-py
            args = (*head.split(), *args[1:])
        assert _pack is not None  # connection_class() picks this class only with hiredis
        return [_pack(args)]


def connection_class() -> type[aioredis.Connection]:
    """The class for ``redis://`` pools (``rediss://`` and ``unix://`` keep redis-py's)."""
    return aioredis.Connection if _pack is None else PackedConnection
