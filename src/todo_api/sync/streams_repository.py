"""All SQL of the live events: stream tickets, the registry of open streams (the per-user limit
across processes and instances), and the two statements the event relay sends on its own
asyncpg connection."""

import hashlib
import uuid
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import Row, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from todo_api.sync.models import event_streams_table, stream_tickets_table

_tickets = stream_tickets_table.c
_streams = event_streams_table.c

# The first key of the advisory lock that serialises one user's stream registrations, so that
# no other lock of this database can share its keys (the second key is the user's).
_STREAMS_LOCK_NAMESPACE = 0x5EE5  # "SSE"
_LOCK_USER = text("SELECT pg_advisory_xact_lock(:namespace, :user_key)")
_NOTIFY = "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload"
# PostgreSQL refuses a payload of 8000 bytes or more.
MAX_PAYLOAD_BYTES = 7900


async def create_ticket(
    connection: AsyncConnection,
    user_id: str,
    ticket_hash: str,
    now: datetime,
    expires_at: datetime,
    token_expires_at: datetime | None,
) -> None:
    """Store a ticket by its hash, and forget every expired one (a minute's worth at most)."""
    await connection.execute(delete(stream_tickets_table).where(_tickets.expires_at <= now))
    await connection.execute(
        insert(stream_tickets_table).values(
            ticket_hash=ticket_hash,
            user_id=user_id,
            expires_at=expires_at,
            token_expires_at=token_expires_at,
        )
    )


async def take_ticket(connection: AsyncConnection, ticket_hash: str) -> Row[Any, Any, Any] | None:
    """Remove the ticket and return it (`user_id`, `expires_at`, `token_expires_at`); one
    statement, so of two requests with the same ticket only one gets it. Expired ones are
    returned too (and so removed): the caller decides."""
    result = await connection.execute(
        delete(stream_tickets_table)
        .where(_tickets.ticket_hash == ticket_hash)
        .returning(_tickets.user_id, _tickets.expires_at, _tickets.token_expires_at)
    )
    return result.first()


async def register_stream(
    connection: AsyncConnection,
    stream_id: uuid.UUID,
    user_id: str,
    now: datetime,
    alive_after: datetime,
    max_streams: int,
) -> bool:
    """Record an open stream of `user_id` unless they already hold `max_streams` (False).

    Run inside one transaction, serialised per user: on PostgreSQL by an advisory lock, on
    SQLite by its single writer (the DELETE comes first, so the transaction holds the write
    lock before it counts). Rows not refreshed since `alive_after` belong to streams whose
    process died: they are removed and not counted."""
    if connection.dialect.name == "postgresql":
        await connection.execute(
            _LOCK_USER, {"namespace": _STREAMS_LOCK_NAMESPACE, "user_key": _lock_key(user_id)}
        )
    await connection.execute(
        delete(event_streams_table).where(
            _streams.user_id == user_id, _streams.seen_at < alive_after
        )
    )
    open_streams = await connection.scalar(
        select(func.count()).select_from(event_streams_table).where(_streams.user_id == user_id)
    )
    if (open_streams or 0) >= max_streams:
        return False
    await connection.execute(
        insert(event_streams_table).values(id=stream_id, user_id=user_id, seen_at=now)
    )
    return True


async def refresh_stream(
    connection: AsyncConnection, stream_id: uuid.UUID, user_id: str, now: datetime
) -> None:
    """The stream is still open (its heartbeat). A row removed as stale meanwhile (this process
    stalled for several heartbeats) is put back."""
    result = await connection.execute(
        update(event_streams_table).where(_streams.id == stream_id).values(seen_at=now)
    )
    if result.rowcount == 0:
        await connection.execute(
            insert(event_streams_table).values(id=stream_id, user_id=user_id, seen_at=now)
        )


async def unregister_stream(connection: AsyncConnection, stream_id: uuid.UUID) -> None:
    await connection.execute(delete(event_streams_table).where(_streams.id == stream_id))


async def notify_changes(
    connection: asyncpg.Connection, channel: str, user_ids: list[str], separator: str
) -> None:
    """The user ids in as few notifications as their size allows (each id joined by
    `separator`), sent in one statement, its own transaction: delivered at once."""
    payloads: list[str] = []
    size = MAX_PAYLOAD_BYTES
    for user_id in user_ids:
        length = len(user_id.encode()) + 1
        if size + length > MAX_PAYLOAD_BYTES:
            payloads.append(user_id)
            size = length
        else:
            payloads[-1] += separator + user_id
            size += length
    await connection.execute(_NOTIFY, channel, payloads)


async def ping(connection: asyncpg.Connection) -> None:
    await connection.execute("SELECT 1")


def _lock_key(user_id: str) -> int:
    """A stable signed 32-bit number for the user id (collisions only serialise two users)."""
    return int.from_bytes(hashlib.sha256(user_id.encode()).digest()[:4], "big", signed=True)
