"""One open event stream (`GET /api/events`, SPEC §11): the change feed, followed.

The stream reads the feed from its cursor whenever the event hub rings (a write of this user
committed somewhere) and at every heartbeat, and sends each change with the cursor right after
it as the event's `id`, so reconnecting with that id in `Last-Event-ID` (or `?since=`) resumes
exactly there: no gap and no duplicate, by construction. It holds no database connection while
it waits or writes, and at most one feed page and a bounded queue of reminders in memory.

Everything that can refuse a stream (cursor 400 or 410, 429 past the per-user limit) happens
in `open_stream`, before its 200. The response itself is a small ASGI response rather than a
`StreamingResponse`: every write has a deadline, and the client's disconnect, the token's
expiry, the server's shutdown and the doorbell are all waited on in one place.
"""

import asyncio
import json
import logging
import math
import os
import time
import uuid
from contextlib import suppress
from datetime import timedelta

from fastapi import status
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from todo_api.auth.tokens import Identity
from todo_api.db import in_transaction, utcnow
from todo_api.errors import (
    CursorExpired,
    InvalidField,
    NotPermitted,
    ServiceUnavailable,
    TaskNotFound,
    TooManyStreams,
    unavailability,
)
from todo_api.runtime import Runtime
from todo_api.sync import feed, streams_repository
from todo_api.sync.events import Subscription
from todo_api.tasks import repository
from todo_api.tasks.repository import TaskRow
from todo_api.tasks.schemas import TaskRead

logger = logging.getLogger(__name__)

# A registered stream not refreshed for this many heartbeats belongs to a dead process.
STALE_AFTER_HEARTBEATS = 3
KEEP_ALIVE = b": keep-alive\n\n"
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class StreamEnded:
    """Why a stream ended, as logged (the hub's own reasons are in `events.StreamEnd`)."""

    CLIENT_GONE = "client disconnected"
    CLIENT_STOPPED_READING = "client stopped reading"
    TOKEN_EXPIRED = "token expired"  # noqa: S105 (a reason, not a password)
    CURSOR_EXPIRED = "cursor expired"
    LIFETIME_REACHED = "EVENTS_MAX_STREAM_SECONDS reached"


class TaskReminder(BaseModel):
    """The data of a `task.reminder` event: the task whose `remind_at` has passed."""

    task: TaskRead


# ---------------------------------------------------------------------------------------------
# Opening a stream: everything that can refuse it happens before its 200


def resume_cursor(last_event_id: str | None, since: str | None) -> str | None:
    """Where to start: `Last-Event-ID` (what `EventSource` sends when it reconnects, so it wins
    over a `since` left in the URL), else `since`, else None (from now on)."""
    if not last_event_id:
        return since or None
    try:
        feed.parse_cursor(last_event_id)
    except InvalidField as invalid:
        raise InvalidField("Last-Event-ID", invalid.field_message, where="header") from None
    return last_event_id


async def open_stream(
    runtime: Runtime, connection: AsyncConnection, caller: Identity, since: str | None
) -> "EventStream":
    """Check the cursor (400, 410) and take one of the caller's stream places (429)."""
    first_page = None
    if since is None:
        start = await feed.current_cursor(connection, caller.id)
    else:
        first_page = await feed.read_changes(connection, caller.id, since, feed.DEFAULT_LIMIT)
        start = since
    settings = runtime.settings
    stream_id = uuid.uuid4()
    now = utcnow()
    alive_after = now - timedelta(
        seconds=STALE_AFTER_HEARTBEATS * settings.events_heartbeat_seconds
    )

    async def register() -> bool:
        return await streams_repository.register_stream(
            connection, stream_id, caller.id, now, alive_after, settings.events_max_streams_per_user
        )

    if not await in_transaction(connection, register):
        raise TooManyStreams(math.ceil(settings.events_heartbeat_seconds))
    logger.info(
        "Event stream opened",
        extra={"user_id": caller.id, "stream_id": str(stream_id), "worker_pid": os.getpid()},
    )
    return EventStream(runtime, caller, stream_id, start, first_page)


# ---------------------------------------------------------------------------------------------
# The stream itself


def sse_event(event: str, data: bytes, event_id: str | None = None) -> bytes:
    """One event in the `text/event-stream` format; `data` is one line of JSON."""
    head = f"event: {event}\n" if event_id is None else f"event: {event}\nid: {event_id}\n"
    return head.encode() + b"data: " + data + b"\n\n"


def ready_event(cursor: str) -> bytes:
    """The first event: where the stream starts, so `EventSource` always has an id to resume
    from, even before any change."""
    return sse_event(
        "ready", json.dumps({"cursor": cursor}, separators=(",", ":")).encode(), cursor
    )


def change_event(change: feed.Change) -> bytes:
    name = "task.deleted" if change.task is None else "task.upserted"
    return sse_event(name, feed.change_json(change), change.cursor)


def reminder_event(task: TaskRow) -> bytes:
    """No `id`: `Last-Event-ID` stays a feed cursor (reminders are not in the feed)."""
    reminder = TaskReminder(task=TaskRead.model_validate(task))
    return sse_event("task.reminder", reminder.model_dump_json().encode())


class ClientStoppedReading(Exception):
    """One write to the stream waited `EVENTS_SEND_TIMEOUT_SECONDS` for the client."""


class _Sender:
    """The stream's writes, each given `EVENTS_SEND_TIMEOUT_SECONDS`: a client that stops
    reading blocks only its own stream, and only that long."""

    def __init__(self, send: Send, timeout: float) -> None:
        self._send = send
        self._timeout = timeout

    async def start(self, headers: list[tuple[bytes, bytes]]) -> None:
        await self._message({"type": "http.response.start", "status": 200, "headers": headers})

    async def write(self, chunk: bytes) -> None:
        await self._message({"type": "http.response.body", "body": chunk, "more_body": True})

    async def finish(self) -> None:
        await self._message({"type": "http.response.body", "body": b"", "more_body": False})

    async def _message(self, message: Message) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._send(message)
        except TimeoutError:
            raise ClientStoppedReading() from None


async def _until_disconnected(receive: Receive, mailbox: Subscription) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    mailbox.end(StreamEnded.CLIENT_GONE)


# What a database outage looks like from here (`errors.unavailability` tells them apart).
_DATABASE_ERRORS = (ServiceUnavailable, SQLAlchemyError, OSError, TimeoutError)


class EventStream(Response):
    """The open stream, as a pure ASGI response: it ends when the client goes, the token
    expires, the server shuts down, or a write waits too long on the client."""

    media_type = "text/event-stream"

    def __init__(
        self,
        runtime: Runtime,
        caller: Identity,
        stream_id: uuid.UUID,
        start: str,
        first_page: feed.FeedPage | None,
    ) -> None:
        self.status_code = status.HTTP_200_OK
        self.background = None
        self.init_headers(STREAM_HEADERS)
        self._runtime = runtime
        self._settings = runtime.settings
        self._user_id = caller.id
        self._expires_at = caller.expires_at
        self._stream_id = stream_id
        self._start = start
        self._cursor = start
        self._first_page = first_page
        self._database_failing = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.monotonic()
        reason = StreamEnded.CLIENT_GONE
        try:
            with self._runtime.events.subscribe(self._user_id) as mailbox:
                watcher = asyncio.create_task(_until_disconnected(receive, mailbox))
                try:
                    reason = await self._serve(_Sender(send, self._timeout), mailbox)
                finally:
                    watcher.cancel()
        finally:
            await self._unregister()
            logger.info(
                "Event stream ended: %s",
                reason,
                extra={
                    "user_id": self._user_id,
                    "stream_id": str(self._stream_id),
                    "duration_s": round(time.monotonic() - started, 3),
                },
            )

    @property
    def _timeout(self) -> float:
        return self._settings.events_send_timeout_seconds

    async def _serve(self, sender: _Sender, mailbox: Subscription) -> str:
        try:
            await sender.start(self.raw_headers)
            await sender.write(ready_event(self._start))
            if self._first_page is not None:
                await self._send_page(sender, self._first_page)
                self._first_page = None
            reason = await self._follow(sender, mailbox)
            await sender.finish()
        except ClientStoppedReading:
            return StreamEnded.CLIENT_STOPPED_READING
        return reason

    async def _follow(self, sender: _Sender, mailbox: Subscription) -> str:
        """Until the stream must end: read the feed when rung and at each heartbeat, pass on
        reminders, and send the keep-alive comment."""
        loop = asyncio.get_running_loop()
        heartbeat = self._settings.events_heartbeat_seconds
        next_beat = loop.time() + heartbeat
        lifetime_ends = loop.time() + self._settings.events_max_stream_seconds
        ends_at = math.inf
        if self._expires_at is not None:
            ends_at = loop.time() + (self._expires_at - time.time())
        while True:
            mailbox.doorbell.clear()  # rung from here on: the wait below returns at once
            if mailbox.ended is not None:
                return mailbox.ended
            now = loop.time()
            if now >= ends_at:
                return StreamEnded.TOKEN_EXPIRED
            if now >= lifetime_ends:
                return StreamEnded.LIFETIME_REACHED
            beat = now >= next_beat
            if beat:
                next_beat = now + heartbeat
                await sender.write(KEEP_ALIVE)
                mailbox.feed_changed = True  # the safety net for a notification lost
            if mailbox.feed_changed:
                mailbox.feed_changed = False
                await self._catch_up(sender, mailbox, refresh=beat)
            while mailbox.reminders and mailbox.ended is None:
                await self._remind(sender, mailbox.reminders.popleft())
            wait = min(next_beat, ends_at, lifetime_ends) - loop.time()
            if wait > 0:
                with suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await mailbox.doorbell.wait()

    async def _catch_up(self, sender: _Sender, mailbox: Subscription, *, refresh: bool) -> None:
        """Send every change after the cursor, one page at a time; no connection is held
        while the page is being written. `refresh`: also tell the registry we are alive."""
        while True:
            try:
                async with self._runtime.connection() as connection:
                    if refresh:
                        await streams_repository.refresh_stream(
                            connection, self._stream_id, self._user_id, utcnow()
                        )
                        refresh = False
                    page = await feed.read_changes(
                        connection, self._user_id, self._cursor, feed.DEFAULT_LIMIT
                    )
            except CursorExpired:
                mailbox.end(StreamEnded.CURSOR_EXPIRED)
                return
            except _DATABASE_ERRORS as exc:
                self._database_trouble(exc)
                return  # the next heartbeat reads again
            self._database_failing = False
            await self._send_page(sender, page)
            if not page.has_more:
                return

    async def _send_page(self, sender: _Sender, page: feed.FeedPage) -> None:
        if page.changes:
            await sender.write(b"".join(change_event(change) for change in page.changes))
        self._cursor = page.cursor

    async def _remind(self, sender: _Sender, task_id: uuid.UUID) -> None:
        try:
            async with self._runtime.connection() as connection:
                task = await repository.get_task(connection, self._user_id, task_id)
        except (TaskNotFound, NotPermitted):
            return  # deleted since: nothing to remind of
        except _DATABASE_ERRORS as exc:
            self._database_trouble(exc)
            return
        await sender.write(reminder_event(task))

    async def _unregister(self) -> None:
        try:
            async with self._runtime.connection() as connection:
                await streams_repository.unregister_stream(connection, self._stream_id)
        except _DATABASE_ERRORS as exc:
            # Its row ages out by itself after a few heartbeats.
            self._database_trouble(exc)

    def _database_trouble(self, exc: BaseException) -> None:
        """Log a database outage once per stream, not at every heartbeat; anything that is
        not an outage is a bug, and raised."""
        problem = unavailability(exc)
        if problem is None:
            raise exc
        if not self._database_failing:
            self._database_failing = True
            logger.warning(
                "Event stream cannot read the database (%s): it keeps trying at each heartbeat",
                problem.message,
                extra={"user_id": self._user_id, "stream_id": str(self._stream_id)},
            )
