"""An httpx transport over aiohttp: what ``AsyncHTTPClient`` sends with when aiohttp is installed
(``pip install offload[client]``).

httpx's own async pool serialises badly under many concurrent requests (measured in issue 22:
317-522 submissions/s and a p99 of 133-755 ms from 50 tasks, against 2,000-2,300/s and 24-38 ms
for aiohttp on the same server). Plans keep building ``httpx.Request`` objects and reading
``httpx.Response`` ones; only the wire under them changes. aiohttp's errors are answered as
httpx's (a timeout as ``httpx.TimeoutException``, anything else as ``httpx.TransportError``), so
the drivers map them the same way whichever transport ran.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any

import aiohttp
import httpx
import orjson

from offload.http_client.plans import Call

#: connections kept to the service (aiohttp's default): enough for hundreds of submitters
POOL_SIZE = 100


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests with one ``aiohttp.ClientSession``, opened on first use."""

    def __init__(self, pool_size: int = POOL_SIZE) -> None:
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size)
            # bodies are handed to httpx raw: it decodes them by their Content-Encoding
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return self._session

    async def fetch(self, call: Call) -> Reply:
        """The whole answer to ``call``: how ``AsyncHTTPClient`` sends plain requests, with no
        ``httpx.Request``, ``httpx.Response`` or ``httpx.AsyncClient.send`` on the way (their
        per-request work was more than aiohttp's own)."""
        timeout = aiohttp.ClientTimeout(
            total=None, connect=call.timeout, sock_connect=call.timeout,
            sock_read=call.read_timeout,
        )  # fmt: skip
        try:
            async with self._open().request(
                call.method, call.url, data=call.content, headers=call.headers,
                timeout=timeout, allow_redirects=False,
            ) as answer:  # fmt: skip
                body = await answer.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _as_httpx(exc, None, connecting=True) from exc
        if answer.headers.get("Content-Encoding", "identity") != "identity":
            body = httpx.Response(200, headers=answer.raw_headers, content=body).content
        return Reply(answer.status, body, call.url)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """For streams (and anyone handing this transport to an ``httpx.AsyncClient``)."""
        timeouts = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None, connect=timeouts.get("pool"), sock_connect=timeouts.get("connect"),
            sock_read=timeouts.get("read"),
        )  # fmt: skip
        try:
            answer = await self._open().request(
                request.method, str(request.url), data=request.content or None,
                headers=request.headers.multi_items(), timeout=timeout, allow_redirects=False,
            )  # fmt: skip
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _as_httpx(exc, request, connecting=True) from exc
        return httpx.Response(
            answer.status, headers=list(answer.raw_headers), stream=_Body(answer, request),
            request=request,
        )  # fmt: skip

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _Body(httpx.AsyncByteStream):
    """An aiohttp response's body, read as httpx reads a stream; closing it frees the connection."""

    def __init__(self, answer: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._answer, self._request = answer, request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._answer.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _as_httpx(exc, self._request, connecting=False) from exc

    async def aclose(self) -> None:
        self._answer.release()


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


def _as_httpx(
    exc: BaseException, request: httpx.Request | None, *, connecting: bool
) -> httpx.HTTPError:
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        kind: type[httpx.TransportError] = (
            httpx.ConnectTimeout if isinstance(exc, aiohttp.ConnectionTimeoutError)
            else httpx.ReadTimeout
        )  # fmt: skip
    elif isinstance(exc, aiohttp.ClientConnectorError) or connecting:
        kind = httpx.ConnectError
    else:
        kind = httpx.ReadError
    return kind(f"{type(exc).__name__}: {exc}", request=request)
