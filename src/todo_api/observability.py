"""Logging set-up, and the outermost middleware: request ids, one access line, last-resort 500s."""

import json
import logging
import os
import re
import sys
import time
import traceback
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from todo_api import metrics

logger = logging.getLogger("todo_api")
access_logger = logging.getLogger("todo_api.access")

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Attributes a plain LogRecord has; everything else was passed through `extra=` and is logged.
_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with whatever the call site passed in `extra`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """Human-readable lines for a terminal, extras appended as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS}
        return line + "".join(f" {k}={v}" for k, v in extras.items())


def configure_logging(level: str, fmt: str) -> None:
    """Send the app's and uvicorn's logs to stderr in one format; uvicorn's access log is
    replaced by ours, which knows the route template and the user."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else TextFormatter("%(asctime)s %(levelname)s %(message)s")
    )
    logging.Formatter.converter = time.gmtime
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # The MCP SDK logs each stateless request's start and end at INFO: the access log says it.
    logging.getLogger("mcp").setLevel(logging.WARNING)


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _SANE_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


def security_headers(hsts_max_age: int) -> list[tuple[bytes, bytes]]:
    """Headers every answer carries (OWASP secure headers for an API). `Cache-Control` is
    only added where the route set none; HSTS only when configured, since it binds browsers
    to HTTPS for that long."""
    headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
    ]
    if hsts_max_age > 0:
        headers.append(
            (b"strict-transport-security", f"max-age={hsts_max_age}; includeSubDomains".encode())
        )
    return headers


class RequestContextMiddleware:
    """The outermost layer, around every request: gives it an id (kept from the client when
    sane) and echoes it in `X-Request-ID`, adds the security headers, turns an unhandled
    exception into a JSON 500, and leaves behind one access log line and its metrics.

    One middleware rather than several: each ASGI layer costs on every request."""

    def __init__(self, app: ASGIApp, hsts_max_age: int = 0) -> None:
        self.app = app
        self.extra_headers = security_headers(hsts_max_age)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = self._answer_headers(
                    message.get("headers", ()), request_id, state.get("rate_limit_headers", ())
                )
            await send(message)

        metrics.IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            logger.error(
                "unhandled error",
                extra={"request_id": request_id, "exception": redacted_traceback(exc)},
            )
            status = 500
            if not response_started:
                start, body = _internal_error(request_id)
                await send_with_headers(start)
                await send(body)
        finally:
            metrics.IN_FLIGHT.dec()
            duration = time.perf_counter() - started
            # The template without convertors: /api/tasks/{task_id}
            route = getattr(scope.get("route"), "path_format", None)
            metrics.observe_request(
                scope["method"], route or metrics.UNMATCHED_ROUTE, status, duration
            )
            access_logger.info(
                "request",
                extra={
                    "method": scope["method"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(duration * 1000, 2),
                    "request_id": request_id,
                    "user_id": state.get("user_id"),
                    # Which of `--workers` answered: a client's requests may reach any of them.
                    "worker_pid": os.getpid(),
                },
            )

    def _answer_headers(
        self,
        headers: Iterable[tuple[bytes, bytes]],
        request_id: str,
        rate_limit_headers: Iterable[tuple[bytes, bytes]],
    ) -> list[tuple[bytes, bytes]]:
        answer = [(name, value) for name, value in headers if name.lower() != b"x-request-id"]
        answer.append((b"x-request-id", request_id.encode()))
        answer.extend(self.extra_headers)
        # `RateLimit-Policy` and `RateLimit` of a request the rate limit admitted (auth/
        # dependencies.py); a 429 brings its own.
        answer.extend(rate_limit_headers)
        if not any(name.lower() == b"cache-control" for name, _ in answer):
            answer.append((b"cache-control", b"no-store"))
        return answer


# Modules whose exceptions quote what they were given: rows ("Failing row contains (...)"),
# bound parameters, the text that failed to encode.
_DATABASE_MODULES = ("sqlalchemy.", "asyncpg.", "sqlite3", "aiosqlite.")
# Attributes of driver errors that name what failed without quoting any value.
_SAFE_ERROR_FIELDS = ("sqlstate", "constraint_name", "table_name", "column_name")


def redacted_traceback(exc: BaseException) -> str:
    """The traceback of an unexpected error, chained ones first as Python prints them, except
    that errors of the database layer and of text encoding show their class and the SQLSTATE,
    constraint, table and column, never their message: that quotes rows and parameters (a
    password hash, an email, a task's text), which a log must not hold."""
    chain: list[BaseException] = []
    error: BaseException | None = exc
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    parts: list[str] = []
    for error in reversed(chain):
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_list(traceback.extract_tb(error.__traceback__)))
        kind = type(error)
        parts.append(f"{kind.__module__}.{kind.__qualname__}: {_safe_message(error)}\n")
    return "".join(parts).rstrip("\n")


def _safe_message(error: BaseException) -> str:
    module = type(error).__module__ + "."
    if not (
        isinstance(error, SQLAlchemyError | UnicodeError) or module.startswith(_DATABASE_MODULES)
    ):
        return str(error)
    named = [
        f"{field}={value}" for field in _SAFE_ERROR_FIELDS if (value := getattr(error, field, None))
    ]
    return "(message withheld, it may quote data)" + "".join(f" {item}" for item in named)


def _internal_error(request_id: str) -> tuple[Message, Message]:
    body = json.dumps({"detail": "Internal server error", "request_id": request_id}).encode()
    start = {
        "type": "http.response.start",
        "status": 500,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    return start, {"type": "http.response.body", "body": body}
