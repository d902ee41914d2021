"""All SQL on `tasks`. Every statement is built from the caller's user id, so no query can
reach another user's row; the one that tells 403 from 404 answers only "whose is it".

Each function runs one statement on the happy path (a second, read-only one only to explain a
miss), on a connection in autocommit mode: every statement is its own transaction. Writes
that must change several rows together (tags, a recurring task's next occurrence) run in one
transaction (`db.transaction`), and only when the request or the task needs it.
"""

import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Executable,
    Row,
    Select,
    bindparam,
    case,
    delete,
    exists,
    false,
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

from todo_api.db import UTCDateTime, in_transaction, utcnow
from todo_api.errors import BadRequest, InvalidField, NotPermitted, PreconditionFailed, TaskNotFound
from todo_api.pagination import INVALID_CURSOR, decode_cursor, encode_cursor
from todo_api.tasks import tags
from todo_api.tasks.models import (
    PRIORITIES,
    NoDueDate,
    columns,
    due_date_key,
    priority_rank,
    task_columns,
    task_tags_table,
    tasks_table,
    title_key,
)
from todo_api.tasks.recurrence import next_occurrence
from todo_api.tasks.schemas import (
    NEEDS_DUE_DATE,
    Order,
    SortField,
    TaskListQuery,
    TaskStats,
    tag_key,
)
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


def list_tasks_statement(user_id: str, query: TaskListQuery, now: datetime) -> Select[Any]:
    """One page of the caller's tasks: filters, a keyset seek past the cursor, limit + 1 rows
    (the extra row only says whether another page follows).

    With `tag=`, the first tag's rows in `task_tags` drive the query (the index on the user's
    rows of that tag, in creation order), and each further tag is a semi-join. `now` is when
    "overdue" and "today" are.
    """
    key = SORT_KEYS[query.sort]
    order = resolved_order(query)
    sort_expression, tie_breaker = key.expression, columns.id
    stmt: Select[Any] = select(*task_columns, key.expression.label("sort_key")).where(
        columns.user_id == user_id
    )
    if query.tag:
        first, *others = dict.fromkeys(tag_key(name) for name in query.tag)
        tagged = task_tags_table.alias("tagged")
        # Joined on the task id alone: more equalities in the join (user, creation time) only
        # make the planner think the join finds fewer rows, and read everything to fill a page.
        stmt = stmt.join(tagged, tagged.c.task_id == columns.id).where(
            tagged.c.user_id == user_id, tagged.c.key == first
        )
        for other in others:
            stmt = stmt.where(
                exists().where(
                    task_tags_table.c.user_id == user_id,
                    task_tags_table.c.key == other,
                    task_tags_table.c.task_id == columns.id,
                )
            )
        if query.sort == "created":  # the same values, read in order from the tag's index
            sort_expression, tie_breaker = tagged.c.created_at, tagged.c.task_id
    stmt = _due_filters(stmt, query, now)
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
        row = tuple_(sort_expression, tie_breaker)
        stmt = stmt.where(row > position if order == "asc" else row < position)
    if order == "asc":
        stmt = stmt.order_by(sort_expression.asc(), tie_breaker.asc())
    else:
        stmt = stmt.order_by(sort_expression.desc(), tie_breaker.desc())
    return stmt.limit(query.limit + 1)


def _due_filters(stmt: Select[Any], query: TaskListQuery, now: datetime) -> Select[Any]:
    """`due`, `due_from`, `due_to` and `remind_before`. Due dates are compared through the
    due-date sort key, the expression its index is built on (no due date sorts as infinity)."""
    pending = columns.completed == false()
    if query.due == "overdue":
        stmt = stmt.where(pending, due_date_key < now)
    elif query.due == "today":
        start, end = query.today(now)
        stmt = stmt.where(due_date_key >= start, due_date_key < end)
    elif query.due == "none":
        stmt = stmt.where(due_date_key == NoDueDate())
    if query.due_from is not None:
        stmt = stmt.where(due_date_key >= query.due_from, due_date_key < NoDueDate())
    if query.due_to is not None:
        stmt = stmt.where(due_date_key < query.due_to)
    if query.remind_before is not None:
        stmt = stmt.where(pending, columns.remind_at < query.remind_before)
    return stmt


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
    connection: AsyncConnection, user_id: str, query: TaskListQuery, now: datetime | None = None
) -> TaskPage:
    statement = list_tasks_statement(user_id, query, now or utcnow())
    rows = (await connection.execute(statement)).all()
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
_GET = select(*task_columns).where(*_OWNED)
_DELETE = delete(tasks_table).where(*_OWNED).returning(columns.id)
_NOT_RECURRING = columns.recurrence.is_(None)
_TOGGLE = (
    sql_update(tasks_table)
    .where(*_OWNED)
    .values(
        completed=not_(columns.completed),
        completed_at=case((columns.completed, None), else_=_NOW),
        updated_at=_NOW,
    )
    .returning(*task_columns)
)
_SET_COMPLETED = (
    sql_update(tasks_table)
    .where(*_OWNED)
    .values(
        completed=bindparam("set_to"),
        # Setting the value it already has is no change, so the version (ETag) stays.
        completed_at=case(
            (columns.completed == bindparam("set_to"), columns.completed_at),
            (bindparam("set_to"), _NOW),
            else_=None,
        ),
        updated_at=case((columns.completed == bindparam("set_to"), columns.updated_at), else_=_NOW),
    )
    .returning(*task_columns)
)
# A task that does not repeat completes in one statement; one that does completes in a
# transaction that also creates its next occurrence.
_TOGGLE_NOT_RECURRING = _TOGGLE.where(_NOT_RECURRING)
_SET_COMPLETED_NOT_RECURRING = _SET_COMPLETED.where(_NOT_RECURRING)
_CLAIM_SUCCESSOR = (
    sql_update(tasks_table)
    .where(columns.id == bindparam("task"), columns.next_occurrence_id.is_(None))
    .values(next_occurrence_id=bindparam("successor"))
    .returning(*task_columns)
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
    """Insert a task (created completed: `completed_at` is now, and it spawns nothing)."""
    now = utcnow()
    values = {
        **fields,
        "id": uuid.uuid4(),
        "user_id": user_id,
        "completed_at": now if fields.get("completed") else None,
        "created_at": now,
        "updated_at": now,
    }
    if not values.get("tags"):
        return await _insert(connection, {**values, "tags": []})

    async def insert_with_tags() -> TaskRow:
        spelled = await tags.spell(connection, user_id, values["tags"])
        task = await _insert(connection, {**values, "tags": spelled})
        await tags.attach(connection, user_id, task.id, now, task.tags)
        return task

    return await in_transaction(connection, insert_with_tags)


async def _insert(connection: AsyncConnection, values: dict[str, Any]) -> TaskRow:
    statement = insert(tasks_table).values(values).returning(*task_columns)
    return (await connection.execute(statement)).one()


async def update_task(
    connection: AsyncConnection,
    user_id: str,
    task_id: uuid.UUID,
    changes: dict[str, Any],
    expected_versions: list[datetime] | None = None,
) -> TaskRow:
    """Apply `changes` in one `UPDATE … RETURNING`; with `expected_versions` (from `If-Match`)
    only if the task is still at one of them, else 412 and nothing changes.

    Changes to tags, completion, recurrence or the due date run in a transaction with what
    they imply: the tag tables, the rule that a recurring task has a due date (checked on the
    task as changed: 400 and nothing changes), and the next occurrence of a task that became
    completed.
    """
    version = [] if expected_versions is None else [columns.updated_at.in_(expected_versions)]
    if not changes:
        statement = select(*task_columns).where(*_OWNED, *version)
        return await _one_owned(connection, statement, user_id, task_id)
    now = utcnow()
    values = {**changes, "updated_at": now}
    if "completed" in changes:
        completed = literal(changes["completed"])
        values["completed_at"] = case(
            (columns.completed == completed, columns.completed_at),
            (completed, literal(now, UTCDateTime())),
            else_=None,
        )
    update_statement = sql_update(tasks_table).where(*_OWNED, *version).returning(*task_columns)
    if not changes.keys() & _CHANGES_WITH_CONSEQUENCES:
        return await _one_owned(connection, update_statement.values(values), user_id, task_id)

    async def update_with_consequences() -> TaskRow:
        spelled = dict(values)
        if "tags" in changes:  # a write first: on SQLite, the transaction begins there
            spelled["tags"] = await tags.spell(connection, user_id, changes["tags"])
        elif "completed" in changes:  # it may copy its tags to a next occurrence
            await tags.hold_tags_of(connection, user_id, task_id)
        task = await _one_owned(connection, update_statement.values(spelled), user_id, task_id)
        if task.recurrence is not None and task.due_date is None:
            raise InvalidField(
                "recurrence" if "recurrence" in changes else "due_date", NEEDS_DUE_DATE
            )
        if "tags" in changes:
            await tags.attach(
                connection, user_id, task.id, task.created_at, task.tags, replace=True
            )
        return await _spawn_next_occurrence(connection, task, now)

    return await in_transaction(connection, update_with_consequences)


_CHANGES_WITH_CONSEQUENCES = {"tags", "completed", "recurrence", "due_date"}


async def set_completed(
    connection: AsyncConnection, user_id: str, task_id: uuid.UUID, completed: bool | None
) -> TaskRow:
    """Flip `completed` (None) or set it, atomically; a recurring task that becomes
    completed spawns its next occurrence in the same transaction."""
    now = utcnow()
    if completed is None:
        params: dict[str, Any] = {"now": now}
        simple, any_task = _TOGGLE_NOT_RECURRING, _TOGGLE
    else:
        simple, any_task = _SET_COMPLETED_NOT_RECURRING, _SET_COMPLETED
        params = {"now": now, "set_to": completed}
    owned: dict[str, Any] = {"owner": user_id, "task": task_id}
    task = (await connection.execute(simple, {**owned, **params})).first()
    if task is not None:
        return task

    async def complete_and_spawn() -> TaskRow:  # recurring, someone else's, or missing
        await tags.hold_tags_of(connection, user_id, task_id)
        task = await _one_owned(connection, any_task, user_id, task_id, **params)
        return await _spawn_next_occurrence(connection, task, now)

    return await in_transaction(connection, complete_and_spawn)


def _moved(remind_at: datetime | None, shift: timedelta) -> datetime | None:
    """The successor's reminder: as far from its due date as this one's was. One that would
    fall past the year 9998 (where due dates end) is dropped, not wrapped or refused."""
    if remind_at is None:
        return None
    try:
        moved = remind_at + shift
    except OverflowError:
        return None
    return moved if moved.year < 9999 else None


async def _spawn_next_occurrence(
    connection: AsyncConnection, task: TaskRow, now: datetime
) -> TaskRow:
    """If `task` has just become completed (`completed_at` is this request's `now`) and repeats,
    create its next occurrence, once: the claim on `next_occurrence_id` only succeeds while it
    is null, and the successor's `previous_occurrence_id` is unique. Called in the transaction
    that completed the task, which holds its row lock until commit."""
    if not (task.completed and task.completed_at == now and task.recurrence is not None):
        return task
    if task.next_occurrence_id is not None or task.due_date is None:
        return task
    following = next_occurrence(task.recurrence, task.due_date, task.time_zone)
    if following is None:  # COUNT or UNTIL exhausted
        return task
    successor_id = uuid.uuid4()
    claimed = (
        await connection.execute(_CLAIM_SUCCESSOR, {"task": task.id, "successor": successor_id})
    ).first()
    if claimed is None:
        return task
    shift = following.due_date - task.due_date
    await _insert(
        connection,
        {
            "id": successor_id,
            "user_id": task.user_id,
            "title": task.title,
            "description": task.description,
            "priority": task.priority,
            "tags": task.tags,
            "recurrence": following.rule,
            "time_zone": task.time_zone,
            "due_date": following.due_date,
            "remind_at": _moved(task.remind_at, shift),
            "completed": False,
            "previous_occurrence_id": task.id,
            "created_at": now,
            "updated_at": now,
        },
    )
    await tags.attach(connection, task.user_id, successor_id, now, task.tags)
    return claimed


async def delete_task(connection: AsyncConnection, user_id: str, task_id: uuid.UUID) -> None:
    await _one_owned(connection, _DELETE, user_id, task_id)


async def task_stats(connection: AsyncConnection, user_id: str) -> TaskStats:
    row = (await connection.execute(_STATS, {"owner": user_id, "now": utcnow()})).one()
    total, completed, overdue = (int(value) for value in row)
    return TaskStats(total=total, completed=completed, pending=total - completed, overdue=overdue)
