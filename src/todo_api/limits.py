"""Request body guard: too large → 413, too slow → 408, not JSON → 415, before any route code
runs."""

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from todo_api.errors import PayloadTooLarge, RequestTimeout, TodoApiError, UnsupportedMediaType

_METHODS_WITH_BODY = {"POST", "PUT", "PATCH", "DELETE"}


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


class BodyGuardMiddleware:
    """Reads at most `max_body_bytes` of a request body within `body_timeout` seconds, then
    replays it to the app.

    Buffering a small, bounded body lets the limit hold for chunked uploads too, where no
    `Content-Length` announces the size; the deadline keeps a client that announces a body and
    then sends it a byte at a time from holding a connection and a request task for ever.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, body_timeout: float) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _METHODS_WITH_BODY:
            await self.app(scope, receive, send)
            return
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await _reject(send, PayloadTooLarge())
            return
        body = b""
        more = True
        try:
            async with asyncio.timeout(self.body_timeout):
                while more and len(body) <= self.max_body_bytes:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    body += message.get("body", b"")
                    more = message.get("more_body", False)
        except TimeoutError:
            await _reject(send, RequestTimeout())
            return
        if len(body) > self.max_body_bytes:
            await _reject(send, PayloadTooLarge())
            return
        if body and not _is_json(headers.get("content-type", "")):
            await _reject(send, UnsupportedMediaType())
            return

        await self.app(scope, replaying(body, receive), send)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body already read, whole, then the client's own
    messages (a disconnect)."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _reject(send: Send, error: TodoApiError) -> None:
    payload = json.dumps({"detail": error.message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
