"""aiohttp under offload's HTTP clients, when it is installed (``pip install offload[client]``).

httpx's pool serialises badly under many concurrent requests (measured in issue 22: 317-522
submissions/s and a p99 of 133-755 ms from 50 asyncio tasks, against 2,000-2,300/s and 24-38 ms
for aiohttp on the same server), and building ``httpx.Request`` and ``httpx.Response`` objects
cost more CPU than aiohttp's whole request. So plain requests (a plan's :class:`Call`) go to
:class:`AiohttpPool` and come back as a :class:`Reply`; event streams, and bodies of ``SMALL``
bytes or more (``plans.fits``), keep httpx: aiohttp reports a server that answers 413 before
reading a large body as a reset connection, where httpx reads the answer. aiohttp's errors are
raised as httpx's, so the drivers map them the same way whichever library ran.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any
from urllib.request import getproxies

import aiohttp
import httpx
import orjson

from offload.http_client.plans import Call

#: connections kept to the service (aiohttp's default): enough for hundreds of submitters
POOL_SIZE = 100


class AiohttpPool:
    """One ``aiohttp.ClientSession``, opened on first use on the loop that uses it."""

    def __init__(self, pool_size: int = POOL_SIZE) -> None:
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size)
            # bodies are decoded below, by their Content-Encoding, as httpx would; proxies from
            # the environment as httpx follows them (looking them up costs each request: only
            # when some are set)
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, trust_env=bool(getproxies())
            )
        return self._session

    async def fetch(self, call: Call) -> Reply:
        """The whole answer to ``call``, with no ``httpx.Request``, ``httpx.Response`` or
        ``httpx.AsyncClient.send`` on the way (their per-request work was more than aiohttp's
        own: ~200 µs)."""
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=call.timeout,
            sock_connect=call.timeout,
            sock_read=call.read_timeout,
        )
        try:
            async with self._open().request(
                call.method,
                call.url,
                data=call.content,
                headers=call.headers,
                timeout=timeout,
                allow_redirects=False,
            ) as answer:
                body = await answer.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _as_httpx(exc) from exc
        if answer.headers.get("Content-Encoding", "identity") != "identity":
            body = httpx.Response(200, headers=answer.raw_headers, content=body).content
        return Reply(answer.status, body, call.url)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class Reply:
    """A whole answer, as plans read it (the :class:`~offload.http_client.plans.Answer`
    attributes of ``httpx.Response``)."""

    __slots__ = ("content", "status_code", "url")

    def __init__(self, status_code: int, content: bytes, url: str) -> None:
        self.status_code, self.content, self.url = status_code, content, url

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    @property
    def reason_phrase(self) -> str:
        try:
            return HTTPStatus(self.status_code).phrase
        except ValueError:
            return ""

    def json(self) -> Any:
        return orjson.loads(self.content)


def _as_httpx(exc: BaseException) -> httpx.TransportError:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return httpx.ReadTimeout(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(f"{type(exc).__name__}: {exc}")
    return httpx.NetworkError(f"{type(exc).__name__}: {exc}")
