"""Idempotent writes (SPEC §11): a write under `/api/tasks` or `/api/tags` sent with an
`Idempotency-Key` runs once; the same user sending the same key with the same request again
within `IDEMPOTENCY_TTL_SECONDS` gets the first answer again, from `idempotency_keys`, so also
after a restart and on another instance.

A pure ASGI middleware, so no route knows of it, and a request without the header costs a look
at its headers and nothing else. With the header it:

1. verifies the caller's token with the routes' own verifier (and its cache); a request whose
   token fails passes through untouched, for the route to answer 401: a 401 is never stored
   and looks up no key;
2. reserves the key with one upsert: a new key, an expired one, or one whose first request
   died (in flight longer than `ABANDONED_AFTER`) becomes this request's;
3. otherwise answers from the stored row: 422 if the key came with another request, 409 while
   the first one is still running, else the first answer with `Idempotent-Replayed: true`;
4. runs the request and stores its answer (any status below 500 but 401) before sending it,
   so a client that saw an answer always gets it again; a 5xx or an exception removes the
   reservation instead, so a retry runs again.

The key is taken as sent: a draft-style quoted key (`"8e03…"`) is its own key, quotes included,
which replays just as well as long as the client sends it the same way each time.
"""

import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from sqlalchemy import and_, delete, null, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from todo_api.auth.dependencies import _bearer_token
from todo_api.auth.tokens import Identity
from todo_api.db import utcnow
from todo_api.errors import (
    ErrorResponse,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    InvalidField,
    InvalidToken,
    ServiceUnavailable,
    TodoApiError,
    error_body,
    unavailability,
)
from todo_api.limits import replaying
from todo_api.openapi import documented_response, json_example
from todo_api.runtime import Runtime
from todo_api.sync.models import idempotency_keys_table as keys

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
VALID_KEY = re.compile(rb"[\x20-\x7e]{1,255}")
KEY_RULE = "must be sent once, as 1 to 255 printable ASCII characters"
# A reservation still unanswered after this long belongs to a request that died (its process
# was killed): requests end within DB_STATEMENT_TIMEOUT and the pool timeout, far sooner.
ABANDONED_AFTER = timedelta(seconds=60)
# Expired keys are ignored at once; their rows are deleted at most this often per process.
PURGE_INTERVAL_SECONDS = 300.0
# What a replay repeats of the first answer's headers, besides its status and body.
STORED_HEADERS = frozenset({b"content-type", b"location", b"etag", b"allow"})
CLAIM_ATTEMPTS = 3
DATABASE_ERRORS = (SQLAlchemyError, OSError, ServiceUnavailable)
# Answers that say nothing about the write, which a retry with the same key must run again: a
# token that failed (a new one must run), and the rate limit (the next window must run).
NOT_STORED = frozenset({HTTPStatus.UNAUTHORIZED, HTTPStatus.TOO_MANY_REQUESTS})


@dataclass(frozen=True, slots=True)
class KeyedRoute:
    """A write route that takes an `Idempotency-Key`. Also the label of an answer given before
    the router ran (a replay, 400, 409, 422, 503): the access log and the metrics read its
    `path_format`, as they read the router's own route."""

    pattern: re.Pattern[str]
    methods: frozenset[str]
    path_format: str


def keyed_routes(*routers: APIRouter) -> list[KeyedRoute]:
    """The write routes of these routers, as the middleware matches them: a request that no
    write route serves (a 404, a 405) passes through untouched, key or not."""
    return [
        KeyedRoute(route.path_regex, frozenset(route.methods) & WRITE_METHODS, route.path_format)
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute) and route.methods and route.methods & WRITE_METHODS
    ]


@dataclass(frozen=True, slots=True)
class Answer:
    """A response as stored, or as captured to be stored."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A key's row: the request it was first sent with, and its answer (None: in flight)."""

    fingerprint: str
    answer: Answer | None


def request_fingerprint(scope: Scope, body: bytes) -> str:
    """SHA-256 of the method, the path with its query, and the body: what "the same request"
    means. The target is JSON-encoded, so no two requests share the bytes hashed."""
    target = json.dumps([scope["method"], scope["path"], scope["query_string"].decode("latin-1")])
    return hashlib.sha256(target.encode() + b"\n" + body).hexdigest()


# SQL: every statement is scoped by the caller's user id, except the purge of expired rows.


async def reserve(
    connection: AsyncConnection,
    user_id: str,
    key: str,
    fingerprint: str,
    *,
    now: datetime,
    expired_before: datetime,
) -> bool:
    """Make the key this request's, reserved at `now`, in one statement: a new key, an
    expired one, or an abandoned reservation of the same request. False: the key is taken."""
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    values = insert(keys).values(
        user_id=user_id,
        key=key,
        fingerprint=fingerprint,
        status_code=None,
        response_headers=null(),
        response_body=null(),
        created_at=now,
    )
    statement = values.on_conflict_do_update(
        index_elements=[keys.c.user_id, keys.c.key],
        set_={
            "fingerprint": values.excluded.fingerprint,
            "status_code": null(),
            "response_headers": null(),
            "response_body": null(),
            "created_at": values.excluded.created_at,
        },
        where=or_(
            keys.c.created_at < expired_before,
            and_(
                keys.c.status_code.is_(None),
                keys.c.created_at < now - ABANDONED_AFTER,
                keys.c.fingerprint == values.excluded.fingerprint,
            ),
        ),
    ).returning(keys.c.key)
    return (await connection.execute(statement)).first() is not None


async def find(connection: AsyncConnection, user_id: str, key: str) -> StoredKey | None:
    """The caller's row for this key, if there is one."""
    statement = select(
        keys.c.fingerprint, keys.c.status_code, keys.c.response_headers, keys.c.response_body
    ).where(keys.c.user_id == user_id, keys.c.key == key)
    row = (await connection.execute(statement)).first()
    if row is None:
        return None
    if row.status_code is None:
        return StoredKey(row.fingerprint, None)
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in row[2]]
    return StoredKey(row.fingerprint, Answer(row.status_code, headers, row.response_body))


def _reservation(user_id: str, key: str, reserved_at: datetime) -> Any:
    """This request's own reservation: not one that took it over after it was abandoned."""
    return and_(
        keys.c.user_id == user_id,
        keys.c.key == key,
        keys.c.created_at == reserved_at,
        keys.c.status_code.is_(None),
    )


async def store_answer(
    connection: AsyncConnection, user_id: str, key: str, reserved_at: datetime, answer: Answer
) -> None:
    headers = [[name.decode("latin-1"), value.decode("latin-1")] for name, value in answer.headers]
    await connection.execute(
        update(keys)
        .where(_reservation(user_id, key, reserved_at))
        .values(status_code=answer.status, response_headers=headers, response_body=answer.body)
    )


async def release(
    connection: AsyncConnection, user_id: str, key: str, reserved_at: datetime
) -> None:
    await connection.execute(delete(keys).where(_reservation(user_id, key, reserved_at)))


async def purge_expired(connection: AsyncConnection, expired_before: datetime) -> int:
    """Delete every user's expired keys (through the index on `created_at`)."""
    result = await connection.execute(delete(keys).where(keys.c.created_at < expired_before))
    return result.rowcount


# The middleware.


class IdempotencyMiddleware:
    """Replays the first answer to a write retried with the same `Idempotency-Key`.

    It sits inside `BodyGuardMiddleware`, so the body it reads is already bounded, complete
    and JSON, and a 408, 413 or 415 from the guard reserves nothing.
    """

    def __init__(self, app: ASGIApp, runtime: Runtime, routes: list[KeyedRoute]) -> None:
        self.app = app
        self.runtime = runtime
        self.routes = routes
        self.ttl = timedelta(seconds=runtime.settings.idempotency_ttl_seconds)
        self._next_purge = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        sent_keys = [value for name, value in scope["headers"] if name == b"idempotency-key"]
        route = self._route_of(scope) if sent_keys else None
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route  # the router puts its own in its place, if it runs
        try:
            caller = await self._caller(scope)
        except DATABASE_ERRORS as exc:
            await _send_error(scope, send, _unavailable(exc))
            return
        if caller is None:  # the route answers 401
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})["user_id"] = caller.id
        body = await _read_body(receive)
        if body is None:  # the client went away
            return
        try:
            key = _valid_key(sent_keys)
            claimed = await self._claim(caller.id, key, request_fingerprint(scope, body))
        except DATABASE_ERRORS as exc:
            await _send_error(scope, send, _unavailable(exc))
            return
        except TodoApiError as error:
            await _send_error(scope, send, error)
            return
        if isinstance(claimed, Answer):
            await _send_answer(send, claimed, replayed=True)
        else:
            await self._run(scope, replaying(body, receive), send, caller.id, key, claimed)
        await self._purge_now_and_then()

    def _route_of(self, scope: Scope) -> KeyedRoute | None:
        method, path = scope["method"], scope["path"]
        for route in self.routes:
            if method in route.methods and route.pattern.match(path):
                return route
        return None

    async def _caller(self, scope: Scope) -> Identity | None:
        """Who the token speaks for (their `users` row made, as the routes make it), or None
        when it is missing or invalid."""
        try:
            identity = await self.runtime.verifier.verify(_bearer_token(Request(scope)))
        except InvalidToken:
            return None
        await self.runtime.users.ensure(identity)  # the keys' rows reference it
        return identity

    async def _claim(self, user_id: str, key: str, fingerprint: str) -> datetime | Answer:
        """This request's reservation time, or the stored answer to replay; raises the 422
        and the 409."""
        for _ in range(CLAIM_ATTEMPTS):
            now = utcnow()
            async with self.runtime.connection() as connection:
                if await reserve(
                    connection, user_id, key, fingerprint, now=now, expired_before=now - self.ttl
                ):
                    return now
                stored = await find(connection, user_id, key)
            if stored is None:
                continue  # its request failed and released it meanwhile: try again
            if stored.fingerprint != fingerprint:
                raise IdempotencyKeyReused()
            if stored.answer is None:
                raise IdempotencyKeyInFlight()
            return stored.answer
        raise IdempotencyKeyInFlight()  # taken and released over and over: a retry will tell

    async def _run(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        user_id: str,
        key: str,
        reserved_at: datetime,
    ) -> None:
        """Run the request, store its answer or release the key, then send it. A 401 (the
        token expired since `_caller`) is not stored either: a new token must run again."""
        capture = _Capture()
        try:
            await self.app(scope, receive, capture.send)
        except BaseException:
            await self._release(user_id, key, reserved_at)
            raise
        answer = capture.answer()
        if answer is None:
            await self._release(user_id, key, reserved_at)
            raise RuntimeError("the app ended without a complete answer")
        if answer.status < 500 and answer.status not in NOT_STORED:
            await self._store(user_id, key, reserved_at, answer)
        else:
            await self._release(user_id, key, reserved_at)
        await capture.replay(send)

    async def _store(self, user_id: str, key: str, reserved_at: datetime, answer: Answer) -> None:
        stored = Answer(
            answer.status,
            [(name, value) for name, value in answer.headers if name.lower() in STORED_HEADERS],
            answer.body,
        )
        try:
            async with self.runtime.connection() as connection:
                await store_answer(connection, user_id, key, reserved_at, stored)
        except DATABASE_ERRORS as exc:
            # The write itself is done, so its answer still goes out; a retry of this key
            # gets 409 until the reservation counts as abandoned, then runs again.
            logger.warning("could not store an idempotent answer (%s)", type(exc).__name__)

    async def _release(self, user_id: str, key: str, reserved_at: datetime) -> None:
        try:
            async with self.runtime.connection() as connection:
                await release(connection, user_id, key, reserved_at)
        except DATABASE_ERRORS as exc:
            logger.warning("could not release an idempotency key (%s)", type(exc).__name__)

    async def _purge_now_and_then(self) -> None:
        """Delete expired keys, at most once per `PURGE_INTERVAL_SECONDS` in each process, after
        a keyed request has been answered (so no client waits for it). Where no keys are
        sent nothing is purged, but nothing is added either."""
        if time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + PURGE_INTERVAL_SECONDS
        try:
            async with self.runtime.connection() as connection:
                await purge_expired(connection, utcnow() - self.ttl)
        except DATABASE_ERRORS as exc:
            logger.warning("could not purge expired idempotency keys (%s)", type(exc).__name__)


class _Capture:
    """Holds the app's answer back until it has been stored."""

    def __init__(self) -> None:
        self.start: Message | None = None
        self.chunks: list[bytes] = []
        self.complete = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))
            self.complete = not message.get("more_body", False)

    def answer(self) -> Answer | None:
        if self.start is None or not self.complete:
            return None
        return Answer(self.start["status"], list(self.start.get("headers", ())), self.body)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    async def replay(self, send: Send) -> None:
        assert self.start is not None
        await send(self.start)
        await send({"type": "http.response.body", "body": self.body})


def _valid_key(sent: list[bytes]) -> str:
    if len(sent) != 1 or not VALID_KEY.fullmatch(sent[0]):
        raise InvalidField(HEADER, KEY_RULE, where="header")
    return sent[0].decode("ascii")


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body (already bounded by the body guard), or None on a disconnect."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _unavailable(exc: BaseException) -> TodoApiError:
    error = unavailability(exc)
    if error is None:
        raise exc
    logger.warning("%s (%s)", error.message, type(error.__cause__ or error).__name__)
    return error


async def _send_answer(send: Send, answer: Answer, *, replayed: bool = False) -> None:
    headers = [*answer.headers, (b"content-length", str(len(answer.body)).encode())]
    if replayed:
        headers.append((REPLAYED_HEADER.lower().encode(), b"true"))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


async def _send_error(scope: Scope, send: Send, error: TodoApiError) -> None:
    headers = [(b"content-type", b"application/json")]
    headers += [(name.lower().encode(), value.encode()) for name, value in error.headers.items()]
    body = json.dumps(error.body()).encode()
    await _send_answer(send, Answer(error.status_code, headers, body))


# The OpenAPI document: the routes do not know of the header, so it is added here.

KEY_PARAMETER: dict[str, Any] = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": "Makes the write safe to retry: send the same key with the same request "
    "again (within 24 h) and get its first answer again, with `Idempotent-Replayed: true`, "
    "instead of writing twice. 1 to 255 printable ASCII characters; a UUID is a good key. "
    "The same key with another method, path or body is a 422; while the first request is "
    "still running, 409.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
    "example": "8e03978e-40d5-43e8-bc93-6894a57f9324",
}
REPLAYED_HEADER_DOC: dict[str, Any] = {
    "description": "`true` on an answer repeated for a retried `Idempotency-Key` (this "
    "status, body, `Location` and `ETag` are the first answer's); absent otherwise. Error "
    "answers below 500 are repeated too.",
    "schema": {"type": "string", "enum": ["true"]},
    "example": "true",
}


def _error_document(description: str, error: TodoApiError, *headers: str) -> dict[str, Any]:
    media = json_example(error_body(error.message))
    media["application/json"]["schema"] = {"$ref": f"#/components/schemas/{ErrorResponse.__name__}"}
    document = documented_response(description, *headers, content=media)
    if "Retry-After" in error.headers:  # its own value as the example
        retry_after = {**document["headers"]["Retry-After"]}
        retry_after["example"] = int(error.headers["Retry-After"])
        document["headers"]["Retry-After"] = retry_after
    return document


KEY_RESPONSES = {
    "409": _error_document(
        "A request with this `Idempotency-Key` is still running; retry after `Retry-After`",
        IdempotencyKeyInFlight(),
        "Retry-After",
    ),
    "422": _error_document(
        "This `Idempotency-Key` was first sent with another method, path or body; nothing "
        "was done (the only 422 of this API)",
        IdempotencyKeyReused(),
    ),
}


def document_idempotent_writes(
    document: dict[str, Any], routes: list[KeyedRoute]
) -> dict[str, Any]:
    """Add the header, the replay marker and the 409 and 422 to every keyed write."""
    keyed = {(method.lower(), route.path_format) for route in routes for method in route.methods}
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            if (method, path) not in keyed:
                continue
            parameters = operation.setdefault("parameters", [])
            if KEY_PARAMETER not in parameters:
                parameters.append(KEY_PARAMETER)
            responses = operation.setdefault("responses", {})
            for status, response in responses.items():
                if status.startswith("2"):
                    response.setdefault("headers", {})[REPLAYED_HEADER] = REPLAYED_HEADER_DOC
            operation["responses"] = dict(sorted({**responses, **KEY_RESPONSES}.items()))
    return document
