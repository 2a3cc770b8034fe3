"""``RequestIdMiddleware``: an id for every request, in the log lines and jobs it causes."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from offload.logs import REQUEST_ID, request_id_from


class RequestIdMiddleware:
    """Give every HTTP request an id: the client's ``X-Request-ID`` if sane, else a new one.

    While the request is served the id is in ``offload.logs.REQUEST_ID``, so that JSON log
    lines (uvicorn's access line included) carry it and the jobs the request submits keep it
    in their meta (their worker's lines carry it too); it is also ``request.state.request_id``
    and the answer's ``X-Request-ID``. :func:`mount` adds it; without ``mount``,
    ``api.add_middleware(RequestIdMiddleware)``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers", ())).get(b"x-request-id", b"").decode("latin-1")
        request_id = request_id_from(given)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        serving = REQUEST_ID.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(serving)
