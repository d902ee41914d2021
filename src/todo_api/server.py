"""The HTTP protocol `todo-api serve` runs: uvicorn's httptools protocol, with a bound on what
one connection may cost a worker.

uvicorn's own protocol accepts a request head of any size (the parser buffers a header until it
ends: 64 MB of headers grew a worker by 260 MB), and gives no deadline to a connection that
sends its head slowly or sends nothing at all (any byte stops the keep-alive timer): a few
hundred such connections used up a worker's file descriptors, and real clients were refused.
Here, on top of uvicorn's keep-alive timeout and concurrency limit:

- a request head (request line and headers) over `SERVER_MAX_HEADER_BYTES` gets 431;
- a head must be complete within `SERVER_HEADER_TIMEOUT` of the connection's start, or of the
  first byte after the previous answer, however slowly it trickles in (slowloris): 408;
- a client that stops reading its answer is cut off after `SERVER_WRITE_TIMEOUT`.

Each of these closes the connection. Slow request bodies are bounded in `limits.py`.
"""

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from todo_api.config import Settings
from todo_api.errors import (
    RequestHeadersTooLarge,
    RequestTimeout,
    ServiceUnavailable,
    TodoApiError,
)

logger = logging.getLogger(__name__)

AT_CAPACITY = "The server is at capacity; try again shortly."


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int
    header_timeout: float
    write_timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> "ConnectionLimits":
        return cls(
            max_header_bytes=settings.server_max_header_bytes,
            header_timeout=settings.server_header_timeout,
            write_timeout=settings.server_write_timeout,
        )


# For the protocol run by uvicorn itself (`--http todo_api.server:BoundedHttpToolsProtocol`).
DEFAULT_LIMITS = ConnectionLimits.from_settings(Settings.model_construct())


class ServerConfig(uvicorn.Config):
    """uvicorn's configuration with the bounded protocol and the limits from `Settings`. With
    several workers it is pickled to each of them, so everything it holds is plain data."""

    def __init__(self, app: str, settings: Settings, **options: Any) -> None:
        super().__init__(
            app,
            http=BoundedHttpToolsProtocol,
            limit_concurrency=settings.server_max_concurrency,
            timeout_keep_alive=settings.server_keepalive_timeout,
            **options,
        )
        self.connection_limits = ConnectionLimits.from_settings(settings)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection, with the bounds above."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = (
            config.connection_limits if isinstance(config, ServerConfig) else DEFAULT_LIMITS
        )
        # Bytes of the head being parsed (request line and headers), and every byte received
        # since the previous request ended: the parser holds a header until it is complete,
        # so only the second counts what an unfinished head already costs.
        self.head_size = 0
        self.bytes_since_last_request = 0
        self.reading_head = True
        self.head_deadline: asyncio.TimerHandle | None = None
        self.write_deadline: asyncio.TimerHandle | None = None
        # The request whose answer is being written: with pipelining, an earlier one than
        # `self.cycle`, the last one parsed.
        self.answering: RequestResponseCycle | None = None
        # Set once the connection is answered here: the parser may still call back for the
        # rest of the data it was fed, and that must not reach the app.
        self.refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self.head_deadline, self.write_deadline):
            if timer is not None:
                timer.cancel()
        # uvicorn tells only `self.cycle` that the client is gone; an earlier pipelined request
        # still being answered would go on writing to the closed transport (an error in uvloop).
        if self.answering is not None and not self.answering.response_complete:
            self.answering.disconnected = True
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._serving():
            self._start_head_clock()
        if self.reading_head:
            self.bytes_since_last_request += len(data)
        super().data_received(data)
        too_large = self.bytes_since_last_request > self.limits.max_header_bytes
        if self.reading_head and too_large and not self.refused:
            self._refuse(RequestHeadersTooLarge())

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_size = 0

    def on_url(self, url: bytes) -> None:
        if self._head_fits(len(url)):
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head_fits(len(name) + len(value) + 4):  # ": " and CRLF
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.reading_head = False
        self._stop_head_clock()
        if self.refused:
            return
        if self._over_concurrency_limit():
            # What uvicorn would answer next, but as JSON with Retry-After, like every 503.
            self._refuse(ServiceUnavailable(AT_CAPACITY))
            return
        super().on_headers_complete()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        self.answering = cycle
        super()._start_asgi_task(cycle, app)

    def on_body(self, body: bytes) -> None:
        if not self.refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self.refused:
            return
        super().on_message_complete()
        self.reading_head = True
        self.bytes_since_last_request = 0

    def send_400_response(self, msg: str) -> None:
        if not self.refused:
            super().send_400_response(msg)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.write_deadline is None:
            self.write_deadline = self.loop.call_later(
                self.limits.write_timeout, self._client_stopped_reading
            )

    def resume_writing(self) -> None:
        if self.transport.is_closing():
            # Aborting empties the buffer, and the transport says so: a writer woken now would
            # write to a closed transport. connection_lost wakes it, knowing the client is gone.
            return
        super().resume_writing()
        if self.write_deadline is not None:
            self.write_deadline.cancel()
            self.write_deadline = None

    def _serving(self) -> bool:
        """Whether a request on this connection is still being answered."""
        return self.cycle is not None and not self.cycle.response_complete

    def _head_fits(self, size: int) -> bool:
        self.head_size += size
        if self.head_size > self.limits.max_header_bytes and not self.refused:
            self._refuse(RequestHeadersTooLarge())
        return not self.refused

    def _over_concurrency_limit(self) -> bool:
        limit = self.limit_concurrency
        return limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit)

    def _start_head_clock(self) -> None:
        if self.head_deadline is None:
            self.head_deadline = self.loop.call_later(
                self.limits.header_timeout, self._head_too_slow
            )

    def _stop_head_clock(self) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
            self.head_deadline = None

    def _head_too_slow(self) -> None:
        self.head_deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is None and self.bytes_since_last_request == 0:
            # Nothing was ever sent: there is no request to answer.
            self.transport.close()
            return
        self._refuse(RequestTimeout())

    def _client_stopped_reading(self) -> None:
        self.write_deadline = None
        logger.info("Client read nothing for %s s: connection closed", self.limits.write_timeout)
        # close() would wait for the buffered answer to be sent, which is what never happens.
        self.transport.abort()

    def _refuse(self, error: TodoApiError) -> None:
        """Answer `error` without the app, then close the connection."""
        self.refused = True
        self._stop_head_clock()
        if self._serving():
            # An earlier (pipelined) request is still being answered: let that answer finish,
            # then close, and read nothing more meanwhile.
            self.cycle.keep_alive = False
            self.flow.pause_reading()
            return
        # No access line is logged for a request the app never saw: this one stands for it.
        request_id = uuid.uuid4().hex
        logger.log(
            logging.WARNING if error.status_code >= 500 else logging.INFO,
            "Answered %d without the app and closed the connection: %s",
            error.status_code,
            error.message,
            extra={"status": error.status_code, "request_id": request_id},
        )
        body = json.dumps({"detail": error.message}).encode()
        headers = [
            *self.server_state.default_headers,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id.encode()),
            *((name.lower().encode(), value.encode()) for name, value in error.headers.items()),
            (b"connection", b"close"),
        ]
        head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        self.transport.write(STATUS_LINE[error.status_code] + head + b"\r\n" + body)
        self.transport.close()
