"""users and tasks, with the indexes every listing uses

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# These expressions must read exactly as the sort keys in todo_api/tasks/models.py:
# PostgreSQL uses an expression index only for the very same expression.
PRIORITY_RANK = (
    "(CASE WHEN (priority = 'high') THEN 3 WHEN (priority = 'medium') THEN 2 "
    "WHEN (priority = 'low') THEN 1 ELSE 0 END)"
)
NO_DUE_DATE = {"postgresql": "'infinity'::timestamptz", "sqlite": "'9999-12-31 23:59:59.999999'"}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    timestamp = sa.DateTime(timezone=True)
    op.create_table(
        "users",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("email", sa.String(320)),
        sa.Column("name", sa.Text()),
        sa.Column("password_hash", sa.Text()),
        sa.Column("created_at", timestamp, nullable=False),
        sa.Column("updated_at", timestamp, nullable=False),
    )
    op.create_index("uq_users_email_lower", "users", [sa.text("lower(email)")], unique=True)
    op.create_table(
        "tasks",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "user_id",
            sa.String(255),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "title",
            sa.String(200).with_variant(sa.String(200, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("description", sa.String(1000)),
        sa.Column("completed", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("priority", sa.String(6)),
        sa.Column("due_date", timestamp),
        sa.Column("created_at", timestamp, nullable=False),
        sa.Column("updated_at", timestamp, nullable=False),
        sa.CheckConstraint("priority IN ('low', 'medium', 'high')", name="priority"),
        sa.CheckConstraint("length(title) >= 1", name="title_not_empty"),
    )
    sort_keys: dict[str, sa.ColumnElement[Any] | sa.TextClause] = {
        "created_at": sa.column("created_at"),
        "updated_at": sa.column("updated_at"),
        "title": sa.text("lower(title)"),
        "due_date": sa.text(
            f"coalesce(due_date, {NO_DUE_DATE.get(dialect, NO_DUE_DATE['sqlite'])})"
        ),
        "priority": sa.text(PRIORITY_RANK),
    }
    for name, key in sort_keys.items():
        op.create_index(
            f"ix_tasks_user_id_{name}_id", "tasks", [sa.column("user_id"), key, sa.column("id")]
        )


def downgrade() -> None:
    op.drop_table("tasks")
    op.drop_table("users")
