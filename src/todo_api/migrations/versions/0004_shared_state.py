"""shared state of several instances: rate-limit windows and failed-login counters

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_windows",
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.Column("last_grant", sa.Integer(), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        # No WAL for a budget that matters for a minute (a lease took 0.5 ms instead of 0.9);
        # a crash empties the table, which only resets the budgets.
        op.execute("ALTER TABLE rate_limit_windows SET UNLOGGED")
    op.create_table(
        "login_failures",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("counter", sa.String(600), nullable=False),
        sa.Column("failed_at", sa.Double(), nullable=False),
    )
    op.create_index(
        "ix_login_failures_counter_failed_at", "login_failures", ["counter", "failed_at"]
    )
    op.create_table(
        "login_known_clients",
        sa.Column("email", sa.String(320), primary_key=True),
        sa.Column("client", sa.String(255), primary_key=True),
        sa.Column("since", sa.Double(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("login_known_clients")
    op.drop_index("ix_login_failures_counter_failed_at", table_name="login_failures")
    op.drop_table("login_failures")
    op.drop_table("rate_limit_windows")
