"""The PostgreSQL backend (``pip install 'offload[postgres]'``): see :mod:`.backend`."""

from __future__ import annotations

from offload.backends.postgres.backend import PostgresBackend

__all__ = ["PostgresBackend"]
