"""``HTTPClient`` and ``AsyncHTTPClient``: offload's HTTP API from Python, on httpx, or on
aiohttp where it is installed (``offload[client]``; see ``aiohttp_.py``).

Each operation is written once, in :class:`~offload.http_client.plans.Plans`, as a *plan*: a
generator that yields steps (send this request, open this stream, read a line, sleep, hand an
event to the caller) and is sent each step's outcome. It builds requests, reads answers and maps
errors, but does no I/O. The two faces only run plans: :class:`HTTPClient` (``sync.py``) with a
blocking ``httpx.Client`` (or aiohttp on a private loop thread), :class:`AsyncHTTPClient`
(``asyncio_.py``) with an ``httpx.AsyncClient`` (or aiohttp). A fix to an operation is a fix
to both.

Errors answer as offload's own exceptions (the error table of :mod:`offload.api.errors`, read
backwards); an error the Python API has no class for (400, 401, 403, 413, 415, 429, 500) raises
:class:`APIError`, and a service that cannot be reached raises
:class:`~offload.errors.BackendUnavailable` naming the URL.
"""

from offload.http_client.asyncio_ import AsyncHTTPClient
from offload.http_client.plans import POLL_INTERVAL, APIError, Event, JobDict
from offload.http_client.sync import HTTPClient

__all__ = ["POLL_INTERVAL", "APIError", "AsyncHTTPClient", "Event", "HTTPClient", "JobDict"]
