"""tags, recurrence, time zone, reminders and completion time on tasks

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    timestamp = sa.DateTime(timezone=True)
    if dialect == "postgresql":
        tag_list: sa.types.TypeEngine[Any] = postgresql.ARRAY(sa.Text())
        no_tags = sa.text("'{}'")
    else:
        tag_list = sa.JSON()
        no_tags = sa.text("'[]'")
    # Plain ALTER TABLE on both databases: a batch operation would make SQLite copy the
    # table, and the copy would lose the expression indexes it cannot reflect.
    # Existing tasks get no tags (the server default).
    op.add_column("tasks", sa.Column("tags", tag_list, nullable=False, server_default=no_tags))
    op.add_column("tasks", sa.Column("recurrence", sa.String(500)))
    op.add_column("tasks", sa.Column("time_zone", sa.String(64)))
    op.add_column("tasks", sa.Column("remind_at", timestamp))
    op.add_column("tasks", sa.Column("completed_at", timestamp))
    op.add_column("tasks", sa.Column("next_occurrence_id", sa.Uuid()))
    op.add_column("tasks", sa.Column("previous_occurrence_id", sa.Uuid()))
    op.create_index(
        "uq_tasks_previous_occurrence_id", "tasks", ["previous_occurrence_id"], unique=True
    )
    # The best estimate of when a task already completed was completed: its last change.
    op.execute("UPDATE tasks SET completed_at = updated_at WHERE completed")
    op.create_index("ix_tasks_user_id_remind_at", "tasks", ["user_id", "remind_at"])
    op.create_table(
        "tags",
        sa.Column(
            "user_id",
            sa.String(255),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("name", sa.String(50), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "key", name="pk_tags"),
    )
    op.create_table(
        "task_tags",
        sa.Column(
            "task_id",
            sa.Uuid(),
            sa.ForeignKey("tasks.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("created_at", timestamp, nullable=False),
        sa.PrimaryKeyConstraint("task_id", "key", name="pk_task_tags"),
        sa.ForeignKeyConstraint(
            ["user_id", "key"],
            ["tags.user_id", "tags.key"],
            ondelete="CASCADE",
            name="fk_task_tags_user_id_tags",
        ),
    )
    op.create_index(
        "ix_task_tags_user_id_key_created_at_task_id",
        "task_tags",
        ["user_id", "key", "created_at", "task_id"],
    )


def downgrade() -> None:
    op.drop_table("task_tags")
    op.drop_table("tags")
    op.drop_index("ix_tasks_user_id_remind_at", table_name="tasks")
    op.drop_index("uq_tasks_previous_occurrence_id", table_name="tasks")
    for column in (
        "previous_occurrence_id",
        "next_occurrence_id",
        "completed_at",
        "remind_at",
        "time_zone",
        "recurrence",
        "tags",
    ):
        op.drop_column("tasks", column)
