"""The yardstick of SPEC §8: a minimal hand-written ASGI app on asyncpg.

It answers the benchmarked routes with the same token check (PyJWT HS256, `exp` and `sub`
required), the same SQL text the API sends (captured from PostgreSQL's statement log: every
column read, `previous_occurrence_id` included), and the same JSON, field for field and in the
API's order (SPEC §10's `tags`, `recurrence`, `time_zone`, `remind_at`, `completed_at` and
`next_occurrence_id` included; stdlib `json`, ISO 8601 UTC datetimes with `Z`). No framework,
no ORM, no validation layer, one statement per request in autocommit: what the API's layers are
measured against. Only the shapes the benchmark uses are supported (tasks without tags or
recurrence, which the API also writes in one statement); anything else is a 400 or 404.

Serve: `DATABASE_URL=... BETTER_AUTH_SECRET=... uvicorn bench.baseline:app --workers 2`.
bench/fastapi_floor.py answers the same requests through FastAPI with the helpers below.
"""

import base64
import json
import os
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

import asyncpg
import jwt

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# The API's own statements, as SQLAlchemy renders them for asyncpg (whitespace aside), read from
# PostgreSQL's log (`ALTER DATABASE … SET log_statement = 'all'`) while the API served each
# benchmarked request. When src/todo_api/tasks/repository.py changes its SQL, capture them again.
LIST_BY_CREATED = """
SELECT tasks.id, tasks.user_id, tasks.title, tasks.description, tasks.completed, tasks.priority,
       tasks.due_date, tasks.created_at, tasks.updated_at, tasks.tags, tasks.recurrence,
       tasks.time_zone, tasks.remind_at, tasks.completed_at, tasks.next_occurrence_id,
       tasks.previous_occurrence_id, tasks.created_at AS sort_key
FROM tasks
WHERE tasks.user_id = $1::VARCHAR ORDER BY tasks.created_at DESC, tasks.id DESC
LIMIT $2::INTEGER"""
LIST_BY_CREATED_AFTER = """
SELECT tasks.id, tasks.user_id, tasks.title, tasks.description, tasks.completed, tasks.priority,
       tasks.due_date, tasks.created_at, tasks.updated_at, tasks.tags, tasks.recurrence,
       tasks.time_zone, tasks.remind_at, tasks.completed_at, tasks.next_occurrence_id,
       tasks.previous_occurrence_id, tasks.created_at AS sort_key
FROM tasks
WHERE tasks.user_id = $1::VARCHAR
  AND (tasks.created_at, tasks.id) < ($2::TIMESTAMP WITH TIME ZONE, $3::UUID)
ORDER BY tasks.created_at DESC, tasks.id DESC
LIMIT $4::INTEGER"""
LIST_PENDING_BY_DUE_DATE = """
SELECT tasks.id, tasks.user_id, tasks.title, tasks.description, tasks.completed, tasks.priority,
       tasks.due_date, tasks.created_at, tasks.updated_at, tasks.tags, tasks.recurrence,
       tasks.time_zone, tasks.remind_at, tasks.completed_at, tasks.next_occurrence_id,
       tasks.previous_occurrence_id,
       coalesce(tasks.due_date, 'infinity'::timestamptz) AS sort_key
FROM tasks
WHERE tasks.user_id = $1::VARCHAR AND tasks.completed = false
ORDER BY coalesce(tasks.due_date, 'infinity'::timestamptz) ASC, tasks.id ASC
LIMIT $2::INTEGER"""
GET_ONE = """
SELECT tasks.id, tasks.user_id, tasks.title, tasks.description, tasks.completed, tasks.priority,
       tasks.due_date, tasks.created_at, tasks.updated_at, tasks.tags, tasks.recurrence,
       tasks.time_zone, tasks.remind_at, tasks.completed_at, tasks.next_occurrence_id,
       tasks.previous_occurrence_id
FROM tasks
WHERE tasks.id = $1::UUID AND tasks.user_id = $2::VARCHAR"""
INSERT = """
INSERT INTO tasks (id, user_id, title, description, completed, priority, due_date, created_at,
                   updated_at, tags, recurrence, time_zone, remind_at, completed_at)
VALUES ($1::UUID, $2::VARCHAR, $3::VARCHAR, $4::VARCHAR, $5::BOOLEAN, $6::VARCHAR,
        $7::TIMESTAMP WITH TIME ZONE, $8::TIMESTAMP WITH TIME ZONE, $9::TIMESTAMP WITH TIME ZONE,
        $10::TEXT[], $11::VARCHAR, $12::VARCHAR, $13::TIMESTAMP WITH TIME ZONE,
        $14::TIMESTAMP WITH TIME ZONE)
RETURNING tasks.id, tasks.user_id, tasks.title, tasks.description, tasks.completed,
          tasks.priority, tasks.due_date, tasks.created_at, tasks.updated_at, tasks.tags,
          tasks.recurrence, tasks.time_zone, tasks.remind_at, tasks.completed_at,
          tasks.next_occurrence_id, tasks.previous_occurrence_id"""
# Only a task that does not repeat; the API completes a recurring one in a transaction that
# also creates its next occurrence (the bench's tasks never repeat).
TOGGLE = """
UPDATE tasks SET completed=NOT tasks.completed, updated_at=$1::TIMESTAMP WITH TIME ZONE,
                 completed_at=CASE WHEN tasks.completed THEN NULL
                                   ELSE $1::TIMESTAMP WITH TIME ZONE END
WHERE tasks.id = $2::UUID AND tasks.user_id = $3::VARCHAR AND tasks.recurrence IS NULL
RETURNING tasks.id, tasks.user_id, tasks.title, tasks.description, tasks.completed,
          tasks.priority, tasks.due_date, tasks.created_at, tasks.updated_at, tasks.tags,
          tasks.recurrence, tasks.time_zone, tasks.remind_at, tasks.completed_at,
          tasks.next_occurrence_id, tasks.previous_occurrence_id"""
OWNED = "SELECT tasks.user_id = $1::VARCHAR AS anon_1 FROM tasks WHERE tasks.id = $2::UUID"

PRIORITIES = {"low", "medium", "high"}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
JSON_HEADER = (b"content-type", b"application/json")
PREFIX = "/api/tasks"
DEFAULT_LIMIT = 100  # the API's page size
MAX_LIMIT = 1000
# A connection unused this long is closed. Under load every connection a worker needs stays in
# use, as in the API's pool; between its turns a server lets go of them, so that besides the
# API only the server under load holds a full pool (three servers of 2 workers with 20
# connections each exceed PostgreSQL's default max_connections of 100). bench/run.py waits
# this long when it switches between this server and the FastAPI floor.
IDLE_CONNECTION_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Settings:
    """What the baseline and the FastAPI floor read from the environment, named as the API's."""

    database_url: str
    secret: str
    pool_size: int
    max_overflow: int

    @classmethod
    def from_environment(cls) -> "Settings":
        return cls(
            database_url=os.environ.get("DATABASE_URL", ""),
            secret=os.environ.get("BETTER_AUTH_SECRET", ""),
            pool_size=int(os.environ.get("DB_POOL_SIZE", "10")),
            max_overflow=int(os.environ.get("DB_MAX_OVERFLOW", "10")),
        )


async def create_pool(settings: Settings) -> asyncpg.Pool:
    """One worker's pool: the API's ceiling (`DB_POOL_SIZE + DB_MAX_OVERFLOW`), connections
    opened on demand, as SQLAlchemy's are. Unlike the API's, overflow connections are kept while
    in use, so a fair comparison under sustained load has no overflow (the bench's default)."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=0,
        max_size=settings.pool_size + settings.max_overflow,
        max_inactive_connection_lifetime=IDLE_CONNECTION_SECONDS,
    )
    return pool


class HttpError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def task_json(row: asyncpg.Record) -> dict[str, Any]:
    """A task row as the API's JSON, fields in the API's order (`previous_occurrence_id` is
    read but not shown, as by the API)."""
    next_occurrence = row["next_occurrence_id"]
    return {
        "id": str(row["id"]),
        "user_id": row["user_id"],
        "title": row["title"],
        "description": row["description"],
        "completed": row["completed"],
        "priority": row["priority"],
        "due_date": _iso(row["due_date"]),
        "tags": list(row["tags"]),
        "recurrence": row["recurrence"],
        "time_zone": row["time_zone"],
        "remind_at": _iso(row["remind_at"]),
        "completed_at": _iso(row["completed_at"]),
        "next_occurrence_id": None if next_occurrence is None else str(next_occurrence),
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


def etag(updated_at: datetime) -> str:
    return f'"{(updated_at - EPOCH) // timedelta(microseconds=1):x}"'


def dumps(body: Any) -> bytes:
    """The response body: compact JSON, UTF-8."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def user_id_from(authorization: str, secret: str) -> str:
    """The `sub` of a valid HS256 bearer token (`exp` and `sub` required), or a 401."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HttpError(401, "Missing bearer token.")
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], leeway=30, options={"require": ["exp", "sub"]}
        )
    except jwt.InvalidTokenError:
        raise HttpError(401, "Invalid token.") from None
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject:
        raise HttpError(401, "Invalid token subject.")
    return subject


def next_link(host: str, params: Mapping[str, str], cursor: str) -> str:
    """The `Link` header of the next page: this listing's query with the cursor."""
    query = urlencode({**params, "cursor": cursor})
    return f'<http://{host}{PREFIX}?{query}>; rel="next"'


async def missing(pool: asyncpg.Pool, task_id: uuid.UUID, user_id: str) -> HttpError:
    """Why a task the caller asked for is not theirs: someone else's (403) or none (404)."""
    owned = await pool.fetchval(OWNED, user_id, task_id)
    if owned is False:
        return HttpError(403, "Not authorized to access this task")
    return HttpError(404, "Task not found")


def _encode_cursor(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if position["sort"] != "created" or position["order"] != "desc":
            raise ValueError("other sort")
        return datetime.fromisoformat(position["key"]), uuid.UUID(position["id"])
    except (ValueError, KeyError, TypeError):
        raise HttpError(400, "Invalid cursor.") from None


def _moment(value: Any, field: str) -> datetime | None:
    """A date-time (naive means UTC) or a date (midnight UTC), in UTC."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise HttpError(400, f"{field} must be an ISO 8601 string.")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise HttpError(400, f"{field} must be an ISO 8601 date or date-time.") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _new_task(body: Any, user_id: str) -> tuple[Any, ...]:
    if not isinstance(body, dict):
        raise HttpError(400, "Body must be a JSON object.")
    title = body.get("title")
    if not isinstance(title, str) or not title.strip() or len(title.strip()) > 200:
        raise HttpError(400, "title must be 1 to 200 characters.")
    description = body.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 1000):
        raise HttpError(400, "description must be at most 1000 characters.")
    priority = body.get("priority")
    if priority is not None and priority not in PRIORITIES:
        raise HttpError(400, "priority must be low, medium or high.")
    completed = body.get("completed", False)
    if not isinstance(completed, bool):
        raise HttpError(400, "completed must be a boolean.")
    # Tags, a recurrence or a time zone take the API into a transaction or more validation:
    # not what the benchmark sends, so not served.
    if body.get("tags", []) != [] or body.get("recurrence") or body.get("time_zone"):
        raise HttpError(400, "The baseline serves only tasks without tags or recurrence.")
    now = datetime.now(UTC)
    return (
        uuid.uuid4(), user_id, title.strip(), description, completed, priority,
        _moment(body.get("due_date"), "due_date"), now, now, [], None, None,
        _moment(body.get("remind_at"), "remind_at"), now if completed else None,
    )  # fmt: skip


class Baseline:
    """The whole app: one asyncpg pool per worker process, created at lifespan start-up."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "lifespan start-up has not run"
        return self._pool

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            try:
                status, body, headers = await self._route(scope, receive)
            except HttpError as error:
                status, body, headers = error.status, {"detail": error.detail}, []
            await _respond(send, status, body, headers)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._pool = await create_pool(self._settings)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._pool is not None:
                    await self._pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(self, scope: Scope, receive: Receive) -> tuple[int, Any, list[Any]]:
        method, path = scope["method"], scope["path"]
        if path == "/health":
            return 200, {"status": "healthy"}, []
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            raise HttpError(404, "Not found.")
        authorization = dict(scope["headers"]).get(b"authorization", b"")
        user_id = user_id_from(authorization.decode("latin-1"), self._settings.secret)
        rest = path[len(PREFIX) + 1 :]
        if not rest:
            if method == "GET":
                return await self._list(scope, user_id)
            if method == "POST":
                return await self._create(await _json_body(receive), user_id)
        elif method == "GET" and "/" not in rest:
            return await self._get(_task_id(rest), user_id)
        elif method == "PATCH" and rest.endswith("/complete"):
            return await self._toggle(_task_id(rest.removesuffix("/complete")), user_id)
        raise HttpError(404, "Not found.")

    async def _list(self, scope: Scope, user_id: str) -> tuple[int, Any, list[Any]]:
        params = dict(parse_qsl(scope["query_string"].decode("latin-1")))
        limit = int(params.get("limit", DEFAULT_LIMIT))
        if not 1 <= limit <= MAX_LIMIT:
            raise HttpError(400, "limit must be 1 to 1000.")
        shape = (params.get("status", "all"), params.get("sort", "created"), "cursor" in params)
        if shape == ("all", "created", False):
            rows = await self.pool.fetch(LIST_BY_CREATED, user_id, limit + 1)
        elif shape == ("all", "created", True):
            key, last_id = _decode_cursor(params["cursor"])
            rows = await self.pool.fetch(LIST_BY_CREATED_AFTER, user_id, key, last_id, limit + 1)
        elif shape == ("pending", "due_date", False):
            rows = await self.pool.fetch(LIST_PENDING_BY_DUE_DATE, user_id, limit + 1)
        else:
            raise HttpError(400, "The baseline serves only the benchmarked listings.")
        headers: list[Any] = []
        if len(rows) > limit:
            cursor = next_cursor(rows[limit - 1], shape[1])
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            link = next_link(host, params, cursor)
            headers = [(b"link", link.encode()), (b"x-next-cursor", cursor.encode())]
        return 200, [task_json(row) for row in rows[:limit]], headers

    async def _get(self, task_id: uuid.UUID, user_id: str) -> tuple[int, Any, list[Any]]:
        row = await self.pool.fetchrow(GET_ONE, task_id, user_id)
        if row is None:
            raise await missing(self.pool, task_id, user_id)
        return 200, task_json(row), [(b"etag", etag(row["updated_at"]).encode())]

    async def _create(self, body: Any, user_id: str) -> tuple[int, Any, list[Any]]:
        row = await self.pool.fetchrow(INSERT, *_new_task(body, user_id))
        headers = [
            (b"location", f"{PREFIX}/{row['id']}".encode()),
            (b"etag", etag(row["updated_at"]).encode()),
        ]
        return 201, task_json(row), headers

    async def _toggle(self, task_id: uuid.UUID, user_id: str) -> tuple[int, Any, list[Any]]:
        row = await self.pool.fetchrow(TOGGLE, datetime.now(UTC), task_id, user_id)
        if row is None:
            raise await missing(self.pool, task_id, user_id)
        return 200, task_json(row), [(b"etag", etag(row["updated_at"]).encode())]


def next_cursor(last: asyncpg.Record, sort: str) -> str:
    """The cursor after `last` in a listing sorted by `sort`, as the API encodes it."""
    key = last["created_at"] if sort == "created" else last["due_date"]
    order = "desc" if sort == "created" else "asc"
    return _encode_cursor(
        {
            "sort": sort,
            "order": order,
            "key": None if key is None else key.isoformat(),
            "id": str(last["id"]),
        }
    )


def _task_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise HttpError(400, "Invalid task id.") from None


async def _json_body(receive: Receive) -> Any:
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        raise HttpError(400, "Invalid JSON.") from None


async def _respond(send: Send, status: int, body: Any, headers: list[Any]) -> None:
    payload = dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [JSON_HEADER, (b"content-length", str(len(payload)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": payload})


app = Baseline(Settings.from_environment())
