"""``sqlite:///path.db``: the embedded backend, zero servers.

- ``backend``: :class:`SQLiteBackend`, the facade the worker and the client call
- ``tx`` and ``claim``: the transactions, one function per state change, run by the writer
- ``schema``: tables, indexes, and rows to records; ``check``: checks on a file before use
- ``threads``: the writer (group commit) and reader threads; ``watch``: idle workers' wake-ups
"""

from offload.backends.sqlite.backend import SQLiteBackend

__all__ = ["SQLiteBackend"]
