"""change numbers, tombstones, reminder queue, idempotency keys, stream tickets and streams

Every write to a task is numbered by a trigger, not by the code that writes: the user's
`users.change_seq` is incremented under that row's lock, so one user's changes are numbered
in the order they commit (a change numbered 11 cannot commit before the one numbered 10,
which holds the lock until it commits), and a follower of the feed that has seen change 11
has seen every change before it. A delete leaves a tombstone with its own number.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POSTGRESQL_TRIGGERS = (
    """
    CREATE FUNCTION todo_api_number_task_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE users SET change_seq = change_seq + 1 WHERE id = NEW.user_id
            RETURNING change_seq INTO NEW.change_seq;
        IF TG_OP = 'INSERT' THEN
            NEW.reminder_pending := NEW.remind_at IS NOT NULL;
        ELSIF NEW.remind_at IS DISTINCT FROM OLD.remind_at THEN
            NEW.reminder_pending := NEW.remind_at IS NOT NULL;
        END IF;
        RETURN NEW;
    END
    $$
    """,
    """
    CREATE FUNCTION todo_api_keep_tombstone() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        seq bigint;
    BEGIN
        UPDATE users SET change_seq = change_seq + 1 WHERE id = OLD.user_id
            RETURNING change_seq INTO seq;
        -- No row: the user is being deleted, and their tombstones with them.
        IF FOUND THEN
            INSERT INTO task_tombstones (task_id, user_id, seq, deleted_at)
                VALUES (OLD.id, OLD.user_id, seq, now());
        END IF;
        RETURN OLD;
    END
    $$
    """,
    """
    CREATE TRIGGER tasks_number_insert BEFORE INSERT ON tasks
        FOR EACH ROW EXECUTE FUNCTION todo_api_number_task_change()
    """,
    # Delivering a reminder changes only `reminder_pending`: not a change of the task.
    """
    CREATE TRIGGER tasks_number_update BEFORE UPDATE ON tasks
        FOR EACH ROW
        WHEN (OLD.reminder_pending IS NOT DISTINCT FROM NEW.reminder_pending)
        EXECUTE FUNCTION todo_api_number_task_change()
    """,
    """
    CREATE TRIGGER tasks_keep_tombstone AFTER DELETE ON tasks
        FOR EACH ROW EXECUTE FUNCTION todo_api_keep_tombstone()
    """,
)

# SQLite cannot assign NEW in a trigger, so it numbers the row just written. Its writers take
# turns (one write transaction at a time), so numbering order is commit order there too.
# Recursive triggers are off (SQLite's default): the trigger's own UPDATE does not re-fire it;
# and the update trigger skips updates that set `change_seq` (the insert trigger's own).
SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f000', 'now')"  # UTCDateTime's stored format
SQLITE_TRIGGERS = (
    """
    CREATE TRIGGER tasks_number_insert AFTER INSERT ON tasks
    BEGIN
        UPDATE users SET change_seq = change_seq + 1 WHERE id = NEW.user_id;
        UPDATE tasks
            SET change_seq = (SELECT change_seq FROM users WHERE id = NEW.user_id),
                reminder_pending = NEW.remind_at IS NOT NULL
            WHERE id = NEW.id;
    END
    """,
    """
    CREATE TRIGGER tasks_number_update AFTER UPDATE ON tasks
        WHEN NEW.reminder_pending IS OLD.reminder_pending AND NEW.change_seq IS OLD.change_seq
    BEGIN
        UPDATE users SET change_seq = change_seq + 1 WHERE id = NEW.user_id;
        UPDATE tasks
            SET change_seq = (SELECT change_seq FROM users WHERE id = NEW.user_id),
                reminder_pending = CASE
                    WHEN NEW.remind_at IS OLD.remind_at THEN NEW.reminder_pending
                    ELSE NEW.remind_at IS NOT NULL
                END
            WHERE id = NEW.id;
    END
    """,
    """
    CREATE TRIGGER tasks_keep_tombstone AFTER DELETE ON tasks
    BEGIN
        UPDATE users SET change_seq = change_seq + 1 WHERE id = OLD.user_id;
        INSERT INTO task_tombstones (task_id, user_id, seq, deleted_at)
            SELECT OLD.id, OLD.user_id, change_seq, strftime('%Y-%m-%d %H:%M:%f000', 'now')
            FROM users WHERE id = OLD.user_id;
    END
    """,
)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    timestamp = sa.DateTime(timezone=True)
    zero = sa.text("0")
    # NOT NULL with a default: a plain ADD COLUMN on both databases (no table copy on SQLite).
    for table, column, default in (
        ("users", "change_seq", zero),
        ("users", "changes_purged_through", zero),
        ("tasks", "change_seq", zero),
        ("tasks", "reminder_pending", sa.false()),
    ):
        column_type = sa.Boolean() if column == "reminder_pending" else sa.BigInteger()
        op.add_column(table, sa.Column(column, column_type, nullable=False, server_default=default))
    # Existing tasks are numbered in the order they were last changed; reminders still ahead
    # are armed, those already past are not announced late.
    op.execute(
        """
        UPDATE tasks SET change_seq = numbered.n
        FROM (
            SELECT id, row_number() OVER (PARTITION BY user_id ORDER BY updated_at, id) AS n
            FROM tasks
        ) AS numbered
        WHERE tasks.id = numbered.id
        """
    )
    op.execute(
        "UPDATE users SET change_seq = "
        "(SELECT coalesce(max(change_seq), 0) FROM tasks WHERE tasks.user_id = users.id)"
    )
    now = "now()" if dialect == "postgresql" else SQLITE_NOW
    op.execute(f"UPDATE tasks SET reminder_pending = true WHERE remind_at > {now}")  # noqa: S608
    op.create_index("uq_tasks_user_id_change_seq", "tasks", ["user_id", "change_seq"], unique=True)
    op.create_index(
        "ix_tasks_reminder_due",
        "tasks",
        ["remind_at"],
        postgresql_where=sa.text("reminder_pending"),
        sqlite_where=sa.text("reminder_pending"),
    )
    op.create_table(
        "task_tombstones",
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("deleted_at", timestamp, nullable=False),
        sa.PrimaryKeyConstraint("task_id", name="pk_task_tombstones"),
    )
    op.create_index(
        "uq_task_tombstones_user_id_seq", "task_tombstones", ["user_id", "seq"], unique=True
    )
    op.create_index("ix_task_tombstones_deleted_at", "task_tombstones", ["deleted_at"])
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer()),
        sa.Column("response_headers", sa.JSON()),
        sa.Column("response_body", sa.LargeBinary()),
        sa.Column("created_at", timestamp, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "key", name="pk_idempotency_keys"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            ondelete="CASCADE",
            name="fk_idempotency_keys_user_id_users",
        ),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])
    op.create_table(
        "stream_tickets",
        sa.Column("ticket_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("expires_at", timestamp, nullable=False),
        sa.Column("token_expires_at", timestamp),
        sa.PrimaryKeyConstraint("ticket_hash", name="pk_stream_tickets"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_stream_tickets_user_id_users"
        ),
    )
    op.create_table(
        "event_streams",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("seen_at", timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_event_streams"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_event_streams_user_id_users"
        ),
    )
    op.create_index("ix_event_streams_user_id", "event_streams", ["user_id"])
    for statement in POSTGRESQL_TRIGGERS if dialect == "postgresql" else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for trigger in ("tasks_keep_tombstone", "tasks_number_update", "tasks_number_insert"):
        op.execute(f"DROP TRIGGER {trigger}" + (" ON tasks" if dialect == "postgresql" else ""))
    if dialect == "postgresql":
        op.execute("DROP FUNCTION todo_api_keep_tombstone()")
        op.execute("DROP FUNCTION todo_api_number_task_change()")
    op.drop_table("event_streams")
    op.drop_table("stream_tickets")
    op.drop_table("idempotency_keys")
    op.drop_table("task_tombstones")
    op.drop_index("ix_tasks_reminder_due", table_name="tasks")
    op.drop_index("uq_tasks_user_id_change_seq", table_name="tasks")
    # Plain DROP COLUMN (SQLite 3.35+): a batch copy would lose SQLite's expression indexes.
    for table, column in (
        ("tasks", "reminder_pending"),
        ("tasks", "change_seq"),
        ("users", "changes_purged_through"),
        ("users", "change_seq"),
    ):
        op.drop_column(table, column)
