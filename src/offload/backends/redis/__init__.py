"""``redis://host:6379/0``: the distributed backend (needs ``pip install 'offload[redis]'``).

- ``backend``: :class:`RedisBackend`, the facade the worker and the client call
- ``scripts`` and ``lua/``: one Lua script per state transition, run atomically
- ``records``: jobs encoded for the scripts, and their replies decoded
- ``reads``: listing jobs through the indexes, histories
- ``conn``, ``server``, ``url``, ``wake``: connections, server checks, URLs, wake-up hints
"""

from offload.backends.redis.backend import RedisBackend

__all__ = ["RedisBackend"]
