"""The change feed: every task of a user that changed after a cursor, and every task deleted.

Why a follower never misses a change: a user's changes are numbered by the database trigger
of migration 0003 under the lock of that user's `users` row, so change n + 1 cannot commit
before change n has. The feed is read in one statement (one snapshot), so whatever it sees
numbered up to n is everything there will ever be up to n, and a cursor "after n" is exact.

A cursor is `seen` (the last change number the client has) and, after a full sync, `known`
(the user's newest number when the full sync began): deletes numbered up to `known` removed
tasks the client never received, so they are not sent, and only tombstones purged after
`known` can make the cursor too old (410). Written `seen` or `seen.known`; opaque to clients.
"""

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, cast, delete, literal, null, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncConnection

from todo_api.auth.repository import users_table
from todo_api.errors import CursorExpired, InvalidField
from todo_api.sync.models import task_tombstones_table
from todo_api.sync.schemas import TaskDeleted, TaskUpserted, change_adapter
from todo_api.tasks.models import columns, task_columns
from todo_api.tasks.schemas import TaskRead

MAX_LIMIT = 1000
DEFAULT_LIMIT = 500
_CURSOR = re.compile(r"(0|[1-9][0-9]{0,17})(?:\.(0|[1-9][0-9]{0,17}))?")
_tombstones = task_tombstones_table.c
_users = users_table.c


@dataclass(frozen=True, slots=True)
class Cursor:
    seen: int
    known: int

    def __str__(self) -> str:
        return str(self.seen) if self.known == self.seen else f"{self.seen}.{self.known}"

    def after(self, seq: int) -> "Cursor":
        return Cursor(seq, max(self.known, seq))


def parse_cursor(raw: str, *, field: str = "since") -> Cursor:
    """The cursor a client sent back; a 400 for anything this feed did not hand out."""
    match = _CURSOR.fullmatch(raw)
    if match is None or (match[2] is not None and int(match[2]) <= int(match[1])):
        raise InvalidField(field, "must be a cursor returned by the change feed", where="query")
    seen = int(match[1])
    return Cursor(seen, int(match[2]) if match[2] is not None else seen)


@dataclass(frozen=True, slots=True)
class Change:
    seq: int
    cursor: str  # resumes right after this change: the event stream's `id:`
    task_id: uuid.UUID
    task: Any | None  # the task's row; None: the task was deleted (a tombstone)


@dataclass(frozen=True, slots=True)
class FeedPage:
    changes: list[Change]
    cursor: str
    has_more: bool


async def read_changes(
    connection: AsyncConnection, user_id: str, since: str | None, limit: int = DEFAULT_LIMIT
) -> FeedPage:
    """The caller's changes after `since`, oldest first; without `since`, every current task
    (a full sync). Raises `InvalidField` for a malformed cursor, `CursorExpired` for one older
    than the tombstones kept."""
    start = parse_cursor(since) if since is not None else None
    # Without `since`, tombstones are not wanted at all: any bound above every number will do.
    seen, tombstones_after = (start.seen, start.known) if start else (0, 2**62)
    rows = (
        await connection.execute(changes_statement(user_id, seen, tombstones_after, limit))
    ).all()
    head, purged_through = 0, 0
    found: list[Any] = []
    for row in rows:
        if row.kind == "head":
            head, purged_through = row.seq, row.purged
        else:
            found.append(row)
    cursor = start or Cursor(0, head)
    if start is not None and (start.known > head or start.known < purged_through):
        raise CursorExpired()
    found.sort(key=lambda row: row.seq)
    changes = []
    for row in found[:limit]:
        cursor = cursor.after(row.seq)
        task = row if row.kind == "upsert" else None
        changes.append(Change(row.seq, str(cursor), row.id, task))
    has_more = len(found) > limit
    if not has_more:
        # Everything up to the head is in this snapshot: the next read starts there.
        cursor = Cursor(head, head)
    return FeedPage(changes, str(cursor), has_more)


async def current_cursor(connection: AsyncConnection, user_id: str) -> str:
    """The cursor of "now": from here on, only changes still to come."""
    head = await connection.scalar(select(_users.change_seq).where(_users.id == user_id))
    return str(Cursor(head or 0, head or 0))


def change_body(change: Change) -> TaskUpserted | TaskDeleted:
    """One entry of the feed's `changes`."""
    if change.task is None:
        return TaskDeleted(id=change.task_id)
    return TaskUpserted(task=TaskRead.model_validate(change.task))


def change_json(change: Change) -> bytes:
    """One entry of the feed's `changes`, as JSON: also the data of a live event."""
    return change_adapter.dump_json(change_body(change))


def changes_statement(user_id: str, seen: int, tombstones_after: int, limit: int) -> Any:
    """One statement, so one snapshot: the changed tasks, the tombstones, and the user's head
    (newest change number and what has been purged), each branch read in order from its
    index. Rows of the other branches carry typed NULLs in the task's columns."""
    no_purge = cast(null(), _users.changes_purged_through.type).label("purged")

    def as_nulls(*, but_id: Any) -> list[Any]:
        return [
            but_id.label("id")
            if column.name == "id"
            else cast(null(), column.type).label(column.name)
            for column in task_columns
        ]

    upserts = (
        select(literal("upsert").label("kind"), columns.change_seq.label("seq"), no_purge)
        .add_columns(*task_columns)
        .where(columns.user_id == user_id, columns.change_seq > seen)
        .order_by(columns.change_seq)
        .limit(limit + 1)
        .subquery()
    )
    deletes = (
        select(literal("delete").label("kind"), _tombstones.seq.label("seq"), no_purge)
        .add_columns(*as_nulls(but_id=_tombstones.task_id))
        .where(_tombstones.user_id == user_id, _tombstones.seq > max(seen, tombstones_after))
        .order_by(_tombstones.seq)
        .limit(limit + 1)
        .subquery()
    )
    head: Select[Any] = select(
        literal("head").label("kind"),
        _users.change_seq.label("seq"),
        _users.changes_purged_through.label("purged"),
        *as_nulls(but_id=cast(null(), columns.id.type)),
    ).where(_users.id == user_id)
    return union_all(select(upserts), select(deletes), head)


async def purge_tombstones(
    connection: AsyncConnection, now: datetime, retention_days: float
) -> int:
    """Forget deletes older than the retention, and remember per user up to which change
    number they are gone (cursors before it: 410). One transaction; returns how many."""
    bound = now - timedelta(days=retention_days)
    purged = (
        await connection.execute(
            delete(task_tombstones_table)
            .where(_tombstones.deleted_at < bound)
            .returning(_tombstones.user_id, _tombstones.seq)
        )
    ).all()
    newest: dict[str, int] = {}
    for user_id, seq in purged:
        newest[user_id] = max(seq, newest.get(user_id, 0))
    for user_id, seq in sorted(newest.items()):
        await connection.execute(
            update(users_table)
            .where(_users.id == user_id, _users.changes_purged_through < seq)
            .values(changes_purged_through=seq)
        )
    return len(purged)
