"""Exceptions that carry their HTTP status, and the handlers that render every error as JSON.

Every error body is `{"detail": "<one sentence>"}`; validation errors add
`"errors": [{"field": ..., "message": ...}]`. Nothing from an exception's internals (stack,
SQL, driver message) ever reaches the client.
"""

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from todo_api.openapi import documented_response, json_example

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "2"
INVALID_JSON = "Request body is not valid JSON."


class TodoApiError(Exception):
    """Base of every error the API answers on purpose."""

    status_code: ClassVar[int] = 500
    detail: ClassVar[str] = "Internal server error"

    def __init__(self, detail: str | None = None, headers: dict[str, str] | None = None) -> None:
        self.message = detail or self.detail
        self.headers = headers or {}
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return error_body(self.message)


class BadRequest(TodoApiError):
    status_code = 400
    detail = "The request is invalid."


class InvalidField(BadRequest):
    """A value that passed its own field's rules but not a rule across fields or rows (a
    recurring task without a due date); rendered like a validation error."""

    def __init__(self, field: str, message: str, *, where: str = "field") -> None:
        super().__init__(f"Invalid {where} '{field}': {message}.")
        self.field = field
        self.field_message = message

    def body(self) -> dict[str, Any]:
        return error_body(
            self.message, errors=[{"field": self.field, "message": self.field_message}]
        )


class InvalidToken(TodoApiError):
    """A 401 for the token; `reason` is a short fixed code for metrics, never the token."""

    status_code = 401
    detail = "Invalid or missing bearer token."

    def __init__(self, detail: str | None = None, *, reason: str = "invalid") -> None:
        super().__init__(detail, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        self.reason = reason


class InvalidTicket(InvalidToken):
    """A `?ticket=` of the event stream that is unknown, used, expired or malformed."""

    detail = "The stream ticket is invalid, expired or already used; get a new one."

    def __init__(self) -> None:
        super().__init__(reason="ticket")


class NotPermitted(TodoApiError):
    status_code = 403
    detail = "Not authorized to access this task"


class ResourceNotFound(TodoApiError):
    status_code = 404
    detail = "Not found"


class TaskNotFound(ResourceNotFound):
    detail = "Task not found"


class TagNotFound(ResourceNotFound):
    detail = "Tag not found"


class InvalidCredentials(TodoApiError):
    status_code = 401
    detail = "Invalid email or password."


class EmailTaken(TodoApiError):
    status_code = 409
    detail = "An account with this email already exists."


class TooManyAttempts(TodoApiError):
    status_code = 429
    detail = "Too many failed logins; try again later."

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(headers={"Retry-After": str(retry_after_seconds)})


class TooManyStreams(TodoApiError):
    """The caller already holds `EVENTS_MAX_STREAMS_PER_USER` open event streams."""

    status_code = 429
    detail = "Too many open event streams; close one and try again."

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(headers={"Retry-After": str(retry_after_seconds)})


class RateLimited(TodoApiError):
    """The caller has used `RATE_LIMIT_PER_MINUTE` requests in this minute (SPEC §13)."""

    status_code = 429
    detail = "Too many requests this minute; retry after the seconds in Retry-After."

    def __init__(self, retry_after_seconds: int, rate_limit_headers: dict[str, str]) -> None:
        super().__init__(headers={"Retry-After": str(retry_after_seconds), **rate_limit_headers})


class PreconditionFailed(TodoApiError):
    status_code = 412
    detail = "The task has changed since the given ETag; fetch it again."


class PayloadTooLarge(TodoApiError):
    status_code = 413
    detail = "Request body is too large."


class RequestTimeout(TodoApiError):
    """The request head or body did not arrive within its `SERVER_*_TIMEOUT`."""

    status_code = 408
    detail = "The request took too long to arrive."


class RequestHeadersTooLarge(TodoApiError):
    status_code = 431
    detail = "Request headers are too large."


class UnsupportedMediaType(TodoApiError):
    status_code = 415
    detail = "Request body must be JSON (Content-Type: application/json)."


class CursorExpired(TodoApiError):
    """A feed cursor from before the oldest change still kept (or from another database)."""

    status_code = 410
    detail = (
        "This cursor is older than the changes still kept; sync again from the start "
        "(without `since`)."
    )


class ServiceUnavailable(TodoApiError):
    """A 503 with `Retry-After`: the request may well succeed if sent again shortly."""

    status_code = 503
    detail = "The database is unavailable; try again shortly."

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, {"Retry-After": RETRY_AFTER_SECONDS})


class DatabaseUnavailable(ServiceUnavailable):
    """The database cannot be reached, or went away in the middle of a statement."""


class DatabaseTimedOut(ServiceUnavailable):
    """A statement ran longer than `DB_STATEMENT_TIMEOUT`, or the server did not answer in time."""

    detail = "The database took too long to answer; try again shortly."


class ConcurrentChange(ServiceUnavailable):
    """Concurrent transactions waited on each other (a deadlock PostgreSQL broke by cancelling
    this one) and retrying did not get through either: nothing of this request was written."""

    detail = "The change collided with others made at the same moment; try again shortly."


class DatabaseBusy(ServiceUnavailable):
    """No pooled connection became free within `DB_POOL_TIMEOUT`."""

    detail = "All database connections are busy; try again shortly."


class IdempotencyKeyReused(TodoApiError):
    """The `Idempotency-Key` was first sent with another method, path or body (SPEC §11)."""

    status_code = 422
    detail = (
        "This Idempotency-Key was already used for a different request; "
        "send a new key with a new request."
    )


class IdempotencyKeyInFlight(TodoApiError):
    """The first request with this `Idempotency-Key` has not answered yet."""

    status_code = 409
    detail = "A request with this Idempotency-Key is still in progress; retry shortly."

    def __init__(self) -> None:
        super().__init__(headers={"Retry-After": "1"})


def unavailability(exc: BaseException) -> ServiceUnavailable | None:
    """The 503 a database failure outside a route means (what the handlers below answer for
    one inside a route), or None when it is not one: a bug, to be left to the 500 handler."""
    if isinstance(exc, ServiceUnavailable):
        return exc
    if isinstance(exc, PoolTimeoutError):
        return _caused(DatabaseBusy(), exc)
    if isinstance(exc, TimeoutError):
        return _caused(DatabaseTimedOut(), exc)
    if isinstance(exc, OSError) or (isinstance(exc, DBAPIError) and _is_connection_problem(exc)):
        return _caused(DatabaseUnavailable(), exc)
    return None


def error_body(detail: str, **extra: Any) -> dict[str, Any]:
    return {"detail": detail, **extra}


def _field_name(loc: Sequence[int | str]) -> str:
    # ("body", "title") -> "title"; ("query", "limit") -> "limit"; whole-body errors -> "body".
    # Bodies and queries are flat, so the name is the second part; what follows it names a
    # member of a union type ("order", "literal['asc','desc']"), not a field.
    return str(loc[1]) if len(loc) > 1 else str(loc[0]) if loc else "body"


def _validation_detail(first: dict[str, Any]) -> str:
    loc = first.get("loc", ())
    where = {"query": "query parameter", "path": "path parameter", "header": "header"}.get(
        str(loc[0]) if loc else "", "field"
    )
    if loc and loc[0] == "body" and len(loc) == 1:
        return f"Invalid request body: {first['msg']}."
    return f"Invalid {where} '{_field_name(loc)}': {first['msg']}."


def _clean_message(error: dict[str, Any]) -> str:
    message = str(error.get("msg", "Invalid value"))
    return message.removeprefix("Value error, ")


def validation_error_body(raw_errors: Sequence[Any]) -> dict[str, Any]:
    """The 400 body for pydantic's errors, located as FastAPI locates them (`("body",
    "title")`): one sentence naming the first field, then one entry per field. The MCP tools
    answer their invalid arguments with it too, so an agent reads the REST API's sentence."""
    errors = [dict(e, msg=_clean_message(e)) for e in raw_errors]
    # One entry per field: a value that fits no member of a union (`order=up` is neither
    # 'asc' nor 'desc' nor absent) gets one error per member; the first one says it.
    by_field: dict[str, str] = {}
    for error in errors:
        by_field.setdefault(_field_name(error.get("loc", ())), error["msg"])
    return error_body(
        _validation_detail(errors[0]) if errors else BadRequest.detail,
        errors=[{"field": field, "message": message} for field, message in by_field.items()],
    )


async def _handle_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if errors and errors[0].get("type") == "json_invalid":
        # Not a field's fault: its location is a character position in the text.
        return JSONResponse(error_body(INVALID_JSON), status_code=400)
    return JSONResponse(validation_error_body(errors), status_code=400)


async def _handle_api_error(request: Request, exc: TodoApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


async def _handle_http_exception(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # FastAPI's only 400 of its own: a body its JSON parser gave up on (nesting too deep, a
    # number too long), worded as our other unparseable bodies are.
    detail = {404: "Not found", 405: "Method not allowed", 400: INVALID_JSON}.get(
        exc.status_code, str(exc.detail)
    )
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
    return JSONResponse(error_body(detail), status_code=exc.status_code, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route answers on this path. The router's own 405 names only the
    methods of the first route it met (FastAPI makes one route per method)."""
    routes = request.app.router.routes
    return [
        method
        for method in _ROUTABLE_METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes
        )
    ]


_ROUTABLE_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


async def _handle_service_unavailable(request: Request, exc: ServiceUnavailable) -> JSONResponse:
    cause = exc.__cause__ or exc
    logger.warning("%s (%s)", exc.message, type(cause).__name__)
    return await _handle_api_error(request, exc)


async def _handle_pool_timeout(request: Request, exc: Exception) -> JSONResponse:
    return await _handle_service_unavailable(request, _caused(DatabaseBusy(), exc))


async def _handle_connect_failure(request: Request, exc: Exception) -> JSONResponse:
    # The only sockets a request opens are database connections (refused, unreachable,
    # unresolvable, or no answer within DB_POOL_TIMEOUT): the driver raises these unwrapped.
    unavailable = DatabaseTimedOut() if isinstance(exc, TimeoutError) else DatabaseUnavailable()
    return await _handle_service_unavailable(request, _caused(unavailable, exc))


def _is_connection_problem(exc: DBAPIError) -> bool:
    return exc.connection_invalidated or isinstance(exc, OperationalError)


async def _handle_dbapi_error(request: Request, exc: Exception) -> JSONResponse:
    # PostgreSQL's unavailability errors arrive translated by `db.py`; this catches SQLite's
    # (a locked database file) and any lost connection the translation did not name.
    if isinstance(exc, DBAPIError) and _is_connection_problem(exc):
        return await _handle_service_unavailable(request, _caused(DatabaseUnavailable(), exc))
    # Anything else is a bug: the request-context middleware logs it and answers 500.
    raise exc


def _caused(error: ServiceUnavailable, cause: Exception) -> ServiceUnavailable:
    error.__cause__ = cause
    return error


def install_error_handlers(app: FastAPI) -> None:
    """Route every expected exception to one renderer; unexpected ones are the middleware's."""
    app.add_exception_handler(TodoApiError, _handle_api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _handle_validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)  # type: ignore[arg-type]
    app.add_exception_handler(ServiceUnavailable, _handle_service_unavailable)  # type: ignore[arg-type]
    app.add_exception_handler(PoolTimeoutError, _handle_pool_timeout)
    app.add_exception_handler(OSError, _handle_connect_failure)
    app.add_exception_handler(DBAPIError, _handle_dbapi_error)


class FieldError(BaseModel):
    field: str
    message: str


class ErrorResponse(BaseModel):
    """Every error body: one sentence, plus per-field messages on validation errors."""

    detail: str
    errors: list[FieldError] | None = None


def error_response(description: str, example: dict[str, Any], *headers: str) -> dict[str, Any]:
    """One OpenAPI `responses=` entry of an error: `ErrorResponse`, an example, its headers."""
    return documented_response(
        description, *headers, model=ErrorResponse, content=json_example(example)
    )


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the given error statuses, all with `ErrorResponse`."""
    documented = {
        400: error_response(
            "Invalid JSON, body, query or path value (never 422)",
            error_body(
                "Invalid field 'priority': Input should be 'low', 'medium' or 'high'.",
                errors=[
                    {"field": "priority", "message": "Input should be 'low', 'medium' or 'high'"}
                ],
            ),
        ),
        401: error_response(
            "Missing, malformed, expired or wrongly signed bearer token",
            error_body(InvalidToken.detail),
            "WWW-Authenticate",
        ),
        403: error_response(
            "The task belongs to someone else; nothing about it changed",
            error_body(NotPermitted.detail),
        ),
        404: error_response("No such task", error_body(TaskNotFound.detail)),
        409: error_response(
            "An account with this email already exists", error_body(EmailTaken.detail)
        ),
        410: error_response(
            "The cursor is older than the changes kept; sync again without `since`",
            error_body(CursorExpired.detail),
        ),
        412: error_response(
            "`If-Match` names a version the task is no longer at; nothing changed",
            error_body(PreconditionFailed.detail),
        ),
        408: error_response(
            "The body did not arrive within SERVER_BODY_TIMEOUT; the connection is closed",
            error_body(RequestTimeout.detail),
        ),
        413: error_response("Body larger than MAX_BODY_BYTES", error_body(PayloadTooLarge.detail)),
        415: error_response("Body is not JSON", error_body(UnsupportedMediaType.detail)),
        429: error_response(
            "Too many failed logins; retry after `Retry-After` seconds",
            error_body(TooManyAttempts.detail),
            "Retry-After",
        ),
        503: error_response(
            "Database unreachable or pool exhausted; retry after `Retry-After` seconds",
            error_body(ServiceUnavailable.detail),
            "Retry-After",
        ),
    }
    return {status: documented[status] for status in statuses}


def drop_422_from_openapi(document: dict[str, Any]) -> dict[str, Any]:
    """FastAPI documents validation errors as 422; this API answers them with 400."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    schemas = document.get("components", {}).get("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    return document
