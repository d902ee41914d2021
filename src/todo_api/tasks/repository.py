"""All SQL on `tasks`. Every statement is built from the caller's user id, so no query can
reach another user's row; the one that tells 403 from 404 answers only "whose is it"."""

import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, case, delete, func, literal, not_, or_, select, tuple_
from sqlalchemy import update as sql_update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from todo_api.db import UTCDateTime, utcnow
from todo_api.errors import BadRequest, NotPermitted, PreconditionFailed, TaskNotFound
from todo_api.pagination import INVALID_CURSOR, decode_cursor, encode_cursor
from todo_api.tasks.models import (
    PRIORITIES,
    NoDueDate,
    Task,
    due_date_key,
    priority_rank,
    title_key,
)
from todo_api.tasks.schemas import Order, SortField, TaskListQuery, TaskStats


@dataclass(frozen=True, slots=True)
class SortKey:
    """How one `sort=` value orders rows, and how its cursor value round-trips."""

    expression: ColumnElement[Any] | InstrumentedAttribute[Any]
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
    if not isinstance(value, str) or "\x00" in value or len(value) > MAX_TITLE_KEY_LENGTH:
        raise TypeError("cursor title is not a title")
    return literal(value)


def _rank(value: Any) -> ColumnElement[Any]:
    if type(value) is not int or not 0 <= value <= len(PRIORITIES):
        raise TypeError("cursor rank is not a priority rank")
    return literal(value)


SORT_KEYS: dict[SortField, SortKey] = {
    "created": SortKey(Task.created_at, "desc", _timestamp),
    "updated": SortKey(Task.updated_at, "desc", _timestamp),
    "title": SortKey(title_key, "asc", _text),
    "due_date": SortKey(due_date_key, "asc", _due_date),
    "priority": SortKey(priority_rank, "desc", _rank),
}


@dataclass(frozen=True, slots=True)
class TaskPage:
    tasks: list[Task]
    next_cursor: str | None


class Ownership(enum.Enum):
    MINE = "mine"
    OTHERS = "others"
    MISSING = "missing"


def resolved_order(query: TaskListQuery) -> Order:
    return query.order or SORT_KEYS[query.sort].default_order


def list_tasks_statement(user_id: str, query: TaskListQuery) -> Select[tuple[Task, Any]]:
    """One page of the caller's tasks: filters, a keyset seek past the cursor, limit + 1 rows
    (the extra row only says whether another page follows)."""
    key = SORT_KEYS[query.sort]
    order = resolved_order(query)
    stmt = select(Task, key.expression.label("sort_key")).where(Task.user_id == user_id)
    if query.status != "all":
        stmt = stmt.where(Task.completed == (query.status == "completed"))
    if query.priority is not None:
        stmt = stmt.where(Task.priority == query.priority)
    if query.q:
        stmt = stmt.where(
            or_(
                Task.title.icontains(query.q, autoescape=True),
                Task.description.icontains(query.q, autoescape=True),
            )
        )
    if query.cursor is not None:
        value, last_id = _cursor_position(query.cursor, query.sort, order)
        position = tuple_(key.to_sql(value), literal(last_id, Task.id.type))
        row = tuple_(key.expression, Task.id)
        stmt = stmt.where(row > position if order == "asc" else row < position)
    if order == "asc":
        stmt = stmt.order_by(key.expression.asc(), Task.id.asc())
    else:
        stmt = stmt.order_by(key.expression.desc(), Task.id.desc())
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


async def list_tasks_page(session: AsyncSession, user_id: str, query: TaskListQuery) -> TaskPage:
    rows = (await session.execute(list_tasks_statement(user_id, query))).all()
    tasks = [row[0] for row in rows[: query.limit]]
    if len(rows) <= query.limit:
        return TaskPage(tasks, None)
    last, last_key = rows[query.limit - 1]
    # The due-date key of an undated task is a sentinel; the cursor says "no date" instead.
    key = last.due_date if query.sort == "due_date" else last_key
    cursor = encode_cursor(
        {
            "sort": query.sort,
            "order": resolved_order(query),
            "key": key.isoformat() if isinstance(key, datetime) else key,
            "id": str(last.id),
        }
    )
    return TaskPage(tasks, cursor)


async def task_ownership(session: AsyncSession, user_id: str, task_id: uuid.UUID) -> Ownership:
    """Whose task this is, relative to the caller; reveals nothing else about it."""
    owned = await session.scalar(select(Task.user_id == user_id).where(Task.id == task_id))
    if owned is None:
        return Ownership.MISSING
    return Ownership.MINE if owned else Ownership.OTHERS


async def _not_found_or_forbidden(
    session: AsyncSession, user_id: str, task_id: uuid.UUID
) -> Exception:
    """The error for a scoped statement that matched no row."""
    ownership = await task_ownership(session, user_id, task_id)
    if ownership is Ownership.OTHERS:
        return NotPermitted()
    if ownership is Ownership.MINE:
        return PreconditionFailed()
    return TaskNotFound()


async def get_task(session: AsyncSession, user_id: str, task_id: uuid.UUID) -> Task:
    task = await session.scalar(select(Task).where(Task.id == task_id, Task.user_id == user_id))
    if task is None:
        raise await _not_found_or_forbidden(session, user_id, task_id)
    return task


async def create_task(session: AsyncSession, user_id: str, fields: dict[str, Any]) -> Task:
    now = utcnow()
    task = Task(user_id=user_id, created_at=now, updated_at=now, **fields)
    session.add(task)
    await session.flush()
    return task


async def update_task(
    session: AsyncSession,
    user_id: str,
    task_id: uuid.UUID,
    changes: dict[str, Any],
    expected_versions: list[datetime] | None = None,
) -> Task:
    """Apply `changes` in one `UPDATE … RETURNING`; with `expected_versions` (from `If-Match`)
    only if the task is still at one of them, else 412 and nothing changes."""
    version = [] if expected_versions is None else [Task.updated_at.in_(expected_versions)]
    if not changes:
        task = await session.scalar(
            select(Task).where(Task.id == task_id, Task.user_id == user_id, *version)
        )
        if task is None:
            raise await _not_found_or_forbidden(session, user_id, task_id)
        return task
    return await _update_returning(
        session, user_id, task_id, {**changes, "updated_at": utcnow()}, *version
    )


async def set_completed(
    session: AsyncSession, user_id: str, task_id: uuid.UUID, completed: bool | None
) -> Task:
    """Flip `completed` (None) or set it, atomically in one statement. Setting the value it
    already has changes nothing, not even `updated_at`."""
    now = literal(utcnow(), UTCDateTime())
    if completed is None:
        values: dict[str, Any] = {"completed": not_(Task.completed), "updated_at": now}
    else:
        values = {
            "completed": completed,
            "updated_at": case((Task.completed == completed, Task.updated_at), else_=now),
        }
    return await _update_returning(session, user_id, task_id, values)


async def _update_returning(
    session: AsyncSession,
    user_id: str,
    task_id: uuid.UUID,
    values: dict[str, Any],
    *conditions: ColumnElement[bool],
) -> Task:
    task: Task | None = await session.scalar(
        sql_update(Task)
        .where(Task.id == task_id, Task.user_id == user_id, *conditions)
        .values(values)
        .returning(Task),
        execution_options={"synchronize_session": False},
    )
    if task is None:
        raise await _not_found_or_forbidden(session, user_id, task_id)
    return task


async def delete_task(session: AsyncSession, user_id: str, task_id: uuid.UUID) -> None:
    deleted = await session.scalar(
        delete(Task).where(Task.id == task_id, Task.user_id == user_id).returning(Task.id)
    )
    if deleted is None:
        raise await _not_found_or_forbidden(session, user_id, task_id)


async def task_stats(session: AsyncSession, user_id: str) -> TaskStats:
    now = literal(utcnow(), UTCDateTime())
    pending = Task.completed == False  # noqa: E712 - SQL comparison, not Python truthiness
    row = (
        await session.execute(
            select(
                func.count(),
                func.count().filter(Task.completed == True),  # noqa: E712
                func.count().filter(pending, Task.due_date < now),
            ).where(Task.user_id == user_id)
        )
    ).one()
    total, completed, overdue = (int(value) for value in row)
    return TaskStats(total=total, completed=completed, pending=total - completed, overdue=overdue)
