"""ASGI middleware: request ids, access metrics and logs, safe default headers; request body
limits and content types; loopback ``Host`` names for a service without tokens.

All are plain ASGI (no ``BaseHTTPMiddleware``) so that streamed answers (Server-Sent Events)
pass through untouched.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from offload.api.errors import error_body
from offload.logs import REQUEST_ID, request_id_from
from offload.service.metrics import Metrics

log = logging.getLogger("offload.service")

REQUEST_ID_HEADER = "x-request-id"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_LOOPBACK_HOST = re.compile(r"^(?:localhost|127(?:\.\d{1,3}){3}|\[::1\])(?::\d{1,5})?$")
#: headers of every answer that lack them: no caching of job data, no content sniffing
_SAFE_HEADERS = ((b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"))
_JSON_TYPE = re.compile(r"^application/(?:[\w.+-]+\+)?json$")


def request_id_of(scope: Scope) -> str:
    """The request's id (set by RequestContextMiddleware)."""
    state = scope.get("state") or {}
    return str(state.get("request_id", ""))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class RequestContextMiddleware:
    """Give every request an id (the client's ``X-Request-ID`` if sane, else a new one), echo
    it in the answer, count and time the request, and log it at DEBUG.

    ``route_of(scope)`` names the route template for metric labels (never the raw path, which
    would make one time series per job id).
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics, route_of: Callable[[Scope], str]):
        self.app = app
        self.metrics = metrics
        self.route_of = route_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(_header(scope, REQUEST_ID_HEADER.encode()))
        scope.setdefault("state", {})["request_id"] = request_id
        in_request = REQUEST_ID.set(request_id)  # for every line logged while it is served
        started = time.perf_counter()
        answered: float | None = None  # when the status line went out
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status = int(message["status"])
                answered = time.perf_counter()
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                present = {name.lower() for name, _ in headers}
                headers += [pair for pair in _SAFE_HEADERS if pair[0] not in present]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # Time to the answer's start: a stream (SSE) is not counted for its whole life.
            elapsed = (answered or time.perf_counter()) - started
            method, route = scope["method"], self.route_of(scope)
            self.metrics.observe_request(method, route, status, elapsed)
            log.debug(
                "%s %s -> %d in %.1f ms",
                method,
                scope["path"],
                status,
                elapsed * 1000,
                extra={"request_id": request_id, "status": status, "route": route},
            )
            REQUEST_ID.reset(in_request)


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` (413) and bodies that are not JSON (415).

    The limit is checked on ``Content-Length`` first and then on the bytes actually received,
    so a chunked or lying client cannot get past it. Accepted bodies are buffered (they are
    small by construction) and replayed to the application.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            if not length.isdigit():
                await _refuse(send, 400, "bad_request", "Content-Length is not a number")
            else:
                await self._too_large(send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = bool(message.get("more_body", False))
            if len(body) > self.max_bytes:
                await self._too_large(send)
                return
        if not _is_json(_header(scope, b"content-type")) and (
            body or _header(scope, b"authorization") is None
        ):
            # A body must be JSON; and a request without a token must say it is JSON even with
            # no body, which a page of another site cannot do without a CORS preflight (that
            # this service never grants): no cross-site cancel of a developer's local jobs.
            await _refuse(
                send,
                415,
                "unsupported_media_type",
                "requests that change state must be JSON: send 'Content-Type: application/json'"
                " (also with an empty body)",
            )
            return
        await self.app(scope, _replay(bytes(body), receive), send)

    async def _too_large(self, send: Send) -> None:
        await _refuse(
            send,
            413,
            "payload_too_large",
            f"the request body is larger than {self.max_bytes} bytes",
            {"max_bytes": self.max_bytes},
        )


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    return bool(_JSON_TYPE.match(content_type.split(";", 1)[0].strip().lower()))


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(
    send: Send, status: int, code: str, message: str, details: dict[str, object] | None = None
) -> None:
    body = error_body(code, message, details)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class LoopbackHostMiddleware:
    """Answer only requests whose ``Host`` is a loopback name (421 otherwise).

    For a service without tokens on a loopback address: a page of another site that points
    its own name at 127.0.0.1 (DNS rebinding) sends its name as the Host, and is refused.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        host = _header(scope, b"host") if scope["type"] == "http" else "localhost"
        if host is not None and _LOOPBACK_HOST.match(host.lower()):
            await self.app(scope, receive, send)
            return
        await _refuse(
            send,
            421,
            "misdirected_request",
            f"this service answers only to a loopback Host (127.0.0.1, localhost), not "
            f"{(host or '')[:100]!r}; set OFFLOAD_TOKENS to serve other names",
        )
