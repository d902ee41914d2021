"""The `tasks`, `tags` and `task_tags` tables, and the sort keys their indexes are built on."""

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ColumnElement,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    Uuid,
    case,
    false,
    func,
    literal_column,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.compiler import SQLCompiler

from todo_api.db import Base, UTCDateTime, utcnow

PRIORITIES = ("low", "medium", "high")

# PostgreSQL compares titles by code point, as SQLite does, so "A→Z" is the same on both and
# does not depend on the server's locale.
TitleType = String(200).with_variant(String(200, collation="C"), "postgresql")

# A task's tags as it answers them, read with the row (no join on the hot path): a text array
# on PostgreSQL, a JSON array on SQLite. `task_tags` is the index of the same facts.
TagListType = JSON().with_variant(ARRAY(Text), "postgresql")

MAX_TAG_KEY = 200  # casefold() may lengthen a 50-character tag


class Task(Base):
    """One task, always owned by exactly one user."""

    __tablename__ = "tasks"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(TitleType)
    description: Mapped[str | None] = mapped_column(String(1000))
    completed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    priority: Mapped[str | None] = mapped_column(String(6))
    due_date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    tags: Mapped[list[str]] = mapped_column(TagListType, default=list)
    recurrence: Mapped[str | None] = mapped_column(String(500))
    time_zone: Mapped[str | None] = mapped_column(String(64))
    remind_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The successor this occurrence spawned. Set once and never cleared, not even when the
    # successor is deleted: it is what stops a second completion from spawning again.
    next_occurrence_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # The occurrence this one was spawned by; unique, so no occurrence has two live successors.
    previous_occurrence_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # Set by the database (migration 0003's triggers), never by the code: the user's change
    # number of this task's last write (the feed's order), and whether `remind_at` is still
    # to be announced.
    change_seq: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    reminder_pending: Mapped[bool] = mapped_column(Boolean, server_default=false())

    __table_args__ = (
        CheckConstraint("priority IN ('low', 'medium', 'high')", name="priority"),
        CheckConstraint("length(title) >= 1", name="title_not_empty"),
        Index("uq_tasks_previous_occurrence_id", "previous_occurrence_id", unique=True),
        Index("uq_tasks_user_id_change_seq", "user_id", "change_seq", unique=True),
        Index(
            "ix_tasks_reminder_due",
            "remind_at",
            postgresql_where=text("reminder_pending"),
            sqlite_where=text("reminder_pending"),
        ),
    )


class Tag(Base):
    """A user's tag: its one spelling (`name`), found by its case-folded `key`."""

    __tablename__ = "tags"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(MAX_TAG_KEY))
    name: Mapped[str] = mapped_column(String(50))

    __table_args__ = (PrimaryKeyConstraint("user_id", "key"),)


class TaskTag(Base):
    """One tag on one task. Keyed by user first, so a tag filter reads only the caller's
    rows; the task's `created_at` is copied (it never changes) so that the default listing
    filtered by a tag is read in order from the index, with no sort."""

    __tablename__ = "task_tags"

    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(MAX_TAG_KEY))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        PrimaryKeyConstraint("task_id", "key"),
        ForeignKeyConstraint(["user_id", "key"], ["tags.user_id", "tags.key"], ondelete="CASCADE"),
        Index(
            "ix_task_tags_user_id_key_created_at_task_id", "user_id", "key", "created_at", "task_id"
        ),
    )


class NoDueDate(ColumnElement[datetime]):
    """The due date a task without one sorts as: after every real date."""

    type = UTCDateTime()
    inherit_cache = True


@compiles(NoDueDate, "postgresql")
def _no_due_date_postgresql(element: NoDueDate, compiler: SQLCompiler, **kw: Any) -> str:
    return "'infinity'::timestamptz"


@compiles(NoDueDate)
def _no_due_date_default(element: NoDueDate, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite stores timestamps as text in this format; due dates are capped below year 9999.
    return "'9999-12-31 23:59:59.999999'"


def _literal(sql: str) -> ColumnElement[Any]:
    # Literals, not bound parameters: PostgreSQL matches an expression index only to the
    # very same expression, constants included.
    return literal_column(sql)


# The table itself: queries are built on its columns (Core), not on the mapped class, which
# keeps the ORM's per-row bookkeeping off the hot path.
tasks_table = cast(Table, Task.__table__)
columns = tasks_table.c
# What a task answers with; the database's own bookkeeping (change_seq, reminder_pending) stays
# out of every read.
task_columns = tuple(
    column for column in tasks_table.c if column.name not in {"change_seq", "reminder_pending"}
)
tags_table = cast(Table, Tag.__table__)
task_tags_table = cast(Table, TaskTag.__table__)

# Sort keys. Each is NOT NULL, so a keyset cursor can compare it as one row value.
title_key: ColumnElement[str] = func.lower(columns.title)
due_date_key: ColumnElement[datetime] = func.coalesce(columns.due_date, NoDueDate())
priority_rank: ColumnElement[int] = case(
    (columns.priority == _literal("'high'"), _literal("3")),
    (columns.priority == _literal("'medium'"), _literal("2")),
    (columns.priority == _literal("'low'"), _literal("1")),
    else_=_literal("0"),
)

# Every listing is scoped by user and ordered by one key with `id` as tie-breaker; one index
# per key serves both directions (PostgreSQL scans it backwards for the other one).
Index("ix_tasks_user_id_created_at_id", columns.user_id, columns.created_at, columns.id)
Index("ix_tasks_user_id_updated_at_id", columns.user_id, columns.updated_at, columns.id)
Index("ix_tasks_user_id_title_id", columns.user_id, title_key, columns.id)
Index("ix_tasks_user_id_due_date_id", columns.user_id, due_date_key, columns.id)
Index("ix_tasks_user_id_priority_id", columns.user_id, priority_rank, columns.id)
Index("ix_tasks_user_id_remind_at", columns.user_id, columns.remind_at)
