"""All SQL on `tasks`. Every statement is built from the caller's user id, so no query can
reach another user's row; the one that tells 403 from 404 answers only "whose is it".

Each function runs one statement on the happy path (a second, read-only one only to explain a
miss), on a connection in autocommit mode: every statement is its own transaction.
"""

import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Executable,
    Row,
    Select,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    not_,
    or_,
    select,
    tuple_,
)
from sqlalchemy import update as sql_update
from sqlalchemy.ext.asyncio import AsyncConnection

from todo_api.db import UTCDateTime, utcnow
from todo_api.errors import BadRequest, NotPermitted, PreconditionFailed, TaskNotFound
from todo_api.pagination import INVALID_CURSOR, decode_cursor, encode_cursor
from todo_api.tasks.models import (
    PRIORITIES,
    NoDueDate,
    columns,
    due_date_key,
    priority_rank,
    tasks_table,
    title_key,
)
from todo_api.tasks.schemas import Order, SortField, TaskListQuery, TaskStats
from todo_api.text import unstorable

# A task as read from the database: attribute access by column name (`row.title`).
TaskRow = Row[Any]


@dataclass(frozen=True, slots=True)
class SortKey:
    """How one `sort=` value orders rows, and how its cursor value round-trips."""

    expression: ColumnElement[Any]
    default_order: Order
    # Cursor JSON value -> SQL expression to compare the sort key against.
    to_sql: Callable[[Any], ColumnElement[Any]]


# Cursors come back from clients, so every value is checked as strictly as a request body.
MAX_TITLE_KEY_LENGTH = 400  # lower() may lengthen a 200-character title


def _timestamp(value: Any) -> ColumnElement[Any]:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("cursor timestamp without offset")
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError("cursor timestamp out of range") from None
    return literal(parsed, UTCDateTime())


def _due_date(value: Any) -> ColumnElement[Any]:
    return NoDueDate() if value is None else _timestamp(value)


def _text(value: Any) -> ColumnElement[Any]:
    if not isinstance(value, str) or len(value) > MAX_TITLE_KEY_LENGTH or unstorable(value):
        raise TypeError("cursor title is not a title")
    return literal(value)


def _rank(value: Any) -> ColumnElement[Any]:
    if type(value) is not int or not 0 <= value <= len(PRIORITIES):
        raise TypeError("cursor rank is not a priority rank")
    return literal(value)


SORT_KEYS: dict[SortField, SortKey] = {
    "created": SortKey(columns.created_at, "desc", _timestamp),
    "updated": SortKey(columns.updated_at, "desc", _timestamp),
    "title": SortKey(title_key, "asc", _text),
    "due_date": SortKey(due_date_key, "asc", _due_date),
    "priority": SortKey(priority_rank, "desc", _rank),
}


@dataclass(frozen=True, slots=True)
class TaskPage:
    tasks: list[TaskRow]
    next_cursor: str | None


class Ownership(enum.Enum):
    MINE = "mine"
    OTHERS = "others"
    MISSING = "missing"


def resolved_order(query: TaskListQuery) -> Order:
    return query.order or SORT_KEYS[query.sort].default_order


def list_tasks_statement(user_id: str, query: TaskListQuery) -> Select[Any]:
    """One page of the caller's tasks: filters, a keyset seek past the cursor, limit + 1 rows
    (the extra row only says whether another page follows)."""
    key = SORT_KEYS[query.sort]
    order = resolved_order(query)
    stmt = select(tasks_table, key.expression.label("sort_key")).where(columns.user_id == user_id)
    if query.status != "all":
        stmt = stmt.where(columns.completed == (query.status == "completed"))
    if query.priority is not None:
        stmt = stmt.where(columns.priority == query.priority)
    if query.q:
        stmt = stmt.where(
            or_(
                columns.title.icontains(query.q, autoescape=True),
                columns.description.icontains(query.q, autoescape=True),
            )
        )
    if query.cursor is not None:
        value, last_id = _cursor_position(query.cursor, query.sort, order)
        position = tuple_(key.to_sql(value), literal(last_id, columns.id.type))
        row = tuple_(key.expression, columns.id)
        stmt = stmt.where(row > position if order == "asc" else row < position)
    if order == "asc":
        stmt = stmt.order_by(key.expression.asc(), columns.id.asc())
    else:
        stmt = stmt.order_by(key.expression.desc(), columns.id.desc())
    return stmt.limit(query.limit + 1)


def _cursor_position(cursor: str, sort: SortField, order: Order) -> tuple[Any, uuid.UUID]:
    position = decode_cursor(cursor)
    if position.get("sort") != sort or position.get("order") != order:
        raise BadRequest(
            "The cursor belongs to another sort or order; start again without a cursor."
        )
    try:
        SORT_KEYS[sort].to_sql(position["key"])  # validates the value's type
        return position["key"], uuid.UUID(str(position["id"]))
    except (KeyError, TypeError, ValueError):
        raise BadRequest(INVALID_CURSOR) from None


async def list_tasks_page(
    connection: AsyncConnection, user_id: str, query: TaskListQuery
) -> TaskPage:
    rows = (await connection.execute(list_tasks_statement(user_id, query))).all()
    tasks = rows[: query.limit]
    if len(rows) <= query.limit:
        return TaskPage(tasks, None)
    last = rows[query.limit - 1]
    # The due-date key of an undated task is a sentinel; the cursor says "no date" instead.
    key = last.due_date if query.sort == "due_date" else last.sort_key
    cursor = encode_cursor(
        {
            "sort": query.sort,
            "order": resolved_order(query),
            "key": key.isoformat() if isinstance(key, datetime) else key,
            "id": str(last.id),
        }
    )
    return TaskPage(tasks, cursor)


# The statements every request runs are built once, with bound parameters: building and
# hashing a statement per request costs about as much as running it.
_OWNED = (columns.id == bindparam("task"), columns.user_id == bindparam("owner"))
_NOW = bindparam("now", type_=UTCDateTime())
_OWNERSHIP = select(columns.user_id == bindparam("owner")).where(columns.id == bindparam("task"))
_GET = select(tasks_table).where(*_OWNED)
_DELETE = delete(tasks_table).where(*_OWNED).returning(columns.id)
_TOGGLE = (
    sql_update(tasks_table)
    .where(*_OWNED)
    .values(completed=not_(columns.completed), updated_at=_NOW)
    .returning(*tasks_table.c)
)
_SET_COMPLETED = (
    sql_update(tasks_table)
    .where(*_OWNED)
    .values(
        completed=bindparam("set_to"),
        # Setting the value it already has is no change, so the version (ETag) stays.
        updated_at=case((columns.completed == bindparam("set_to"), columns.updated_at), else_=_NOW),
    )
    .returning(*tasks_table.c)
)
_STATS = select(
    func.count(),
    func.count().filter(columns.completed == True),  # noqa: E712 - SQL, not Python truthiness
    func.count().filter(columns.completed == False, columns.due_date < _NOW),  # noqa: E712
).where(columns.user_id == bindparam("owner"))


async def task_ownership(
    connection: AsyncConnection, user_id: str, task_id: uuid.UUID
) -> Ownership:
    """Whose task this is, relative to the caller; reveals nothing else about it."""
    owned = await connection.scalar(_OWNERSHIP, {"owner": user_id, "task": task_id})
    if owned is None:
        return Ownership.MISSING
    return Ownership.MINE if owned else Ownership.OTHERS


async def _not_found_or_forbidden(
    connection: AsyncConnection, user_id: str, task_id: uuid.UUID
) -> Exception:
    """The error for a scoped statement that matched no row."""
    ownership = await task_ownership(connection, user_id, task_id)
    if ownership is Ownership.OTHERS:
        return NotPermitted()
    if ownership is Ownership.MINE:
        return PreconditionFailed()
    return TaskNotFound()


async def _one_owned(
    connection: AsyncConnection,
    statement: Executable,
    user_id: str,
    task_id: uuid.UUID,
    **params: Any,
) -> TaskRow:
    """Run a statement scoped to one task of the caller; no row → 403, 404 or 412."""
    result = await connection.execute(statement, {"owner": user_id, "task": task_id, **params})
    row = result.first()
    if row is None:
        raise await _not_found_or_forbidden(connection, user_id, task_id)
    return row


async def get_task(connection: AsyncConnection, user_id: str, task_id: uuid.UUID) -> TaskRow:
    return await _one_owned(connection, _GET, user_id, task_id)


async def create_task(connection: AsyncConnection, user_id: str, fields: dict[str, Any]) -> TaskRow:
    now = utcnow()
    values = {"id": uuid.uuid4(), "user_id": user_id, "created_at": now, "updated_at": now}
    stmt = insert(tasks_table).values({**fields, **values}).returning(*tasks_table.c)
    return (await connection.execute(stmt)).one()


async def update_task(
    connection: AsyncConnection,
    user_id: str,
    task_id: uuid.UUID,
    changes: dict[str, Any],
    expected_versions: list[datetime] | None = None,
) -> TaskRow:
    """Apply `changes` in one `UPDATE … RETURNING`; with `expected_versions` (from `If-Match`)
    only if the task is still at one of them, else 412 and nothing changes."""
    version = [] if expected_versions is None else [columns.updated_at.in_(expected_versions)]
    if changes:
        statement: Executable = (
            sql_update(tasks_table)
            .where(*_OWNED, *version)
            .values({**changes, "updated_at": utcnow()})
            .returning(*tasks_table.c)
        )
    else:
        statement = select(tasks_table).where(*_OWNED, *version)
    return await _one_owned(connection, statement, user_id, task_id)


async def set_completed(
    connection: AsyncConnection, user_id: str, task_id: uuid.UUID, completed: bool | None
) -> TaskRow:
    """Flip `completed` (None) or set it, atomically in one statement."""
    if completed is None:
        return await _one_owned(connection, _TOGGLE, user_id, task_id, now=utcnow())
    return await _one_owned(
        connection, _SET_COMPLETED, user_id, task_id, now=utcnow(), set_to=completed
    )


async def delete_task(connection: AsyncConnection, user_id: str, task_id: uuid.UUID) -> None:
    await _one_owned(connection, _DELETE, user_id, task_id)


async def task_stats(connection: AsyncConnection, user_id: str) -> TaskStats:
    row = (await connection.execute(_STATS, {"owner": user_id, "now": utcnow()})).one()
    total, completed, overdue = (int(value) for value in row)
    return TaskStats(total=total, completed=completed, pending=total - completed, overdue=overdue)
