"""``memory://``: the reference backend, in plain Python (see :mod:`.backend`).

- ``store``: the state (dicts under one lock) and the helpers every operation shares
- ``reads``: lifecycle and reads; ``backend``: :class:`MemoryBackend`, with the writes
"""

from offload.backends.memory.backend import MemoryBackend

__all__ = ["MemoryBackend"]
