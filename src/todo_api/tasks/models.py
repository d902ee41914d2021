"""The `tasks` table, and the sort keys its indexes are built on."""

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ColumnElement,
    ForeignKey,
    Index,
    String,
    Table,
    Uuid,
    case,
    false,
    func,
    literal_column,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.compiler import SQLCompiler

from todo_api.db import Base, UTCDateTime, utcnow

PRIORITIES = ("low", "medium", "high")

# PostgreSQL compares titles by code point, as SQLite does, so "A→Z" is the same on both and
# does not depend on the server's locale.
TitleType = String(200).with_variant(String(200, collation="C"), "postgresql")


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

    __table_args__ = (
        CheckConstraint("priority IN ('low', 'medium', 'high')", name="priority"),
        CheckConstraint("length(title) >= 1", name="title_not_empty"),
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
