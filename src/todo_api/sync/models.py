"""The tables of §11: tombstones of deleted tasks, stored answers to idempotent writes,
stream tickets and open event streams.

The change numbers themselves live on existing rows (`users.change_seq`, `tasks.change_seq`),
kept by the database triggers of migration 0003, so that no write can forget them.
"""

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from todo_api.db import Base, UTCDateTime


class TaskTombstone(Base):
    """A deleted task, kept for `SYNC_RETENTION_DAYS` so that followers of the feed learn of
    the delete; `seq` is the user's change number of the delete."""

    __tablename__ = "task_tombstones"

    task_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255))
    seq: Mapped[int] = mapped_column(BigInteger)
    deleted_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("uq_task_tombstones_user_id_seq", "user_id", "seq", unique=True),
        Index("ix_task_tombstones_deleted_at", "deleted_at"),
    )


class IdempotencyKey(Base):
    """The first answer to a write sent with an `Idempotency-Key`; `status_code` is NULL while
    that first request is still running."""

    __tablename__ = "idempotency_keys"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_headers: Mapped[Any | None] = mapped_column(JSON)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        PrimaryKeyConstraint("user_id", "key"),
        Index("ix_idempotency_keys_created_at", "created_at"),
    )


class StreamTicket(Base):
    """A single-use ticket that opens one event stream (EventSource cannot send a header);
    only its SHA-256 is stored."""

    __tablename__ = "stream_tickets"

    ticket_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # When the token that asked for the ticket expires: the stream ends then.
    token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class EventStream(Base):
    """One open event stream, for the per-user limit across processes and instances;
    `seen_at` is refreshed by its heartbeat, so a crashed process's rows age out."""

    __tablename__ = "event_streams"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_event_streams_user_id", "user_id"),)


task_tombstones_table = cast(Table, TaskTombstone.__table__)
idempotency_keys_table = cast(Table, IdempotencyKey.__table__)
stream_tickets_table = cast(Table, StreamTicket.__table__)
event_streams_table = cast(Table, EventStream.__table__)
