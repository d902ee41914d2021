"""The event hub: which of this process's open event streams must look at the change feed
again, and which reminders they must pass on (SPEC §11, live events).

A stream never takes change data from here. The change feed is the one source of truth: the
hub only rings a stream's doorbell, and the stream reads the feed from its own cursor, so a
stream can miss no change and repeat none however the doorbells ring (twice, late, or not at
all: every stream also reads the feed at each heartbeat).

Who rings: a write route, once its transaction has committed (`sync/announce.py`), calls
`announce(user_id)`, which never waits: it rings the user's streams in this process and, on
PostgreSQL, queues the user id for `PostgresRelay`, which sends `pg_notify` on a connection of
its own (batching whatever queued meanwhile) and LISTENs there, ringing this process's streams
for what other processes announce. Reminders arrive the same way (`REMINDERS_CHANNEL`, sent by
`sync/reminders.py` in the transaction that claims them), or directly on SQLite.
"""

import asyncio
import json
import logging
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any

import asyncpg

from todo_api.config import Settings
from todo_api.db import normalise_database_url
from todo_api.sync import streams_repository

logger = logging.getLogger(__name__)

CHANGES_CHANNEL = "todo_api_changes"
REMINDERS_CHANNEL = "todo_api_reminders"
# Reminders waiting in one stream; a stream that falls this far behind is dropped (its client
# reconnects), so a stuck client cannot make the process hold an ever-growing queue.
MAX_QUEUED_REMINDERS = 100
# Reconnecting the LISTEN connection: first after this, doubling up to the maximum.
RECONNECT_FIRST_DELAY_SECONDS = 0.5
RECONNECT_MAX_DELAY_SECONDS = 10.0
# A LISTEN connection that served this long was healthy: if it is lost, reconnect at once.
STEADY_AFTER_SECONDS = 30.0
# How long the relay gathers announcements before it sends them: NOTIFY costs a commit (and
# a disk flush) and wakes every listening process, so one per write halved the write rate
# under load (`make bench`, create at 100 connections); this adds at most this much latency.
NOTIFY_BATCH_SECONDS = 0.02
# User ids in one notification are separated by a newline (a token's `sub` never holds one).
USER_SEPARATOR = "\n"
# The signals on which uvicorn begins a graceful shutdown.
EXIT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StreamEnd:
    """Why a stream must stop (each a short fixed text, logged with the stream)."""

    SHUTDOWN = "server shutting down"
    REMINDERS_OVERFLOWED = "too many reminders waiting"


class Subscription:
    """One open stream's mailbox: a doorbell, whether the feed may hold something new, the
    reminders to pass on, and whether it must end."""

    __slots__ = ("doorbell", "ended", "feed_changed", "reminders", "user_id")

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.doorbell = asyncio.Event()
        # True at first: whatever committed before the stream subscribed is read at once.
        self.feed_changed = True
        self.reminders: deque[uuid.UUID] = deque()
        self.ended: str | None = None

    def ring(self) -> None:
        self.feed_changed = True
        self.doorbell.set()

    def remind(self, task_id: uuid.UUID) -> None:
        if len(self.reminders) >= MAX_QUEUED_REMINDERS:
            self.end(StreamEnd.REMINDERS_OVERFLOWED)
            return
        self.reminders.append(task_id)
        self.doorbell.set()

    def end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
        self.doorbell.set()


class EventHub:
    """This process's open streams, by user, and the relay to the other processes (None on
    SQLite, which is served by one process)."""

    def __init__(self, relay: "PostgresRelay | None" = None) -> None:
        self._streams: dict[str, set[Subscription]] = {}
        self._relay = relay
        self._ending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        if relay is not None:
            relay.attach(self)

    @classmethod
    def from_settings(cls, settings: Settings) -> "EventHub":
        url = settings.events_database_url or settings.resolved_database_url
        if normalise_database_url(url).get_backend_name() != "postgresql":
            return cls()
        dsn, options = asyncpg_connect_args(url)
        if not settings.db_statement_cache:
            # A transaction pooler keeps no named statement; and it cannot LISTEN at all.
            options["statement_cache_size"] = 0
            if not settings.events_database_url:
                logger.warning(
                    "DB_STATEMENT_CACHE=false: if DATABASE_URL is a transaction pooler, set "
                    "EVENTS_DATABASE_URL to a direct connection for LISTEN/NOTIFY; until then "
                    "live events from other processes arrive at each stream's next heartbeat."
                )
        relay = PostgresRelay(
            dsn,
            options,
            connect_timeout=settings.db_pool_timeout,
            keepalive_seconds=settings.events_heartbeat_seconds,
        )
        return cls(relay)

    async def start(self) -> None:
        """Begin relaying (the LISTEN connection is opened in the background)."""
        self._loop = asyncio.get_running_loop()
        self._ending = False
        if self._relay is not None:
            self._relay.start()

    async def close(self) -> None:
        """End every stream of this process and stop relaying."""
        self.end_streams()
        if self._relay is not None:
            await self._relay.close()

    @contextmanager
    def subscribe(self, user_id: str) -> Iterator[Subscription]:
        """A mailbox for one stream of `user_id`, for as long as the block runs."""
        subscription = Subscription(user_id)
        if self._ending:
            subscription.end(StreamEnd.SHUTDOWN)
        streams = self._streams.setdefault(user_id, set())
        streams.add(subscription)
        try:
            yield subscription
        finally:
            streams.discard(subscription)
            if not streams and self._streams.get(user_id) is streams:
                del self._streams[user_id]

    def announce(self, user_id: str) -> None:
        """`user_id`'s tasks changed (committed): ring their streams, here and everywhere."""
        self.ring(user_id)
        if self._relay is not None:
            self._relay.publish(user_id)

    def ring(self, user_id: str) -> None:
        """Ring this process's streams of `user_id`: they read the feed again."""
        for subscription in self._streams.get(user_id, ()):
            subscription.ring()

    def ring_everyone(self) -> None:
        """Ring every stream of this process (notifications may have been missed)."""
        for streams in self._streams.values():
            for subscription in streams:
                subscription.ring()

    def reminder(self, user_id: str, task_id: uuid.UUID) -> None:
        """A reminder of `user_id`'s task is due: each of their streams here passes it on."""
        for subscription in self._streams.get(user_id, ()):
            subscription.remind(task_id)

    def end_streams(self) -> None:
        """End every stream of this process, and any opened from now on (shutting down)."""
        self._ending = True
        for streams in self._streams.values():
            for subscription in streams:
                subscription.end(StreamEnd.SHUTDOWN)

    def end_streams_soon(self) -> None:
        """`end_streams()` from a signal handler: scheduled on the event loop, not run inside
        whatever the handler interrupted."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.end_streams)

    def open_streams(self, user_id: str | None = None) -> int:
        """How many streams this process holds open (for one user, or in all)."""
        if user_id is not None:
            return len(self._streams.get(user_id, ()))
        return sum(len(streams) for streams in self._streams.values())


@contextmanager
def streams_end_on_exit_signals(hub: EventHub) -> Iterator[None]:
    """While the block runs, SIGTERM and SIGINT first end the hub's streams, then do what they
    did before (uvicorn's graceful shutdown).

    uvicorn waits for every response in flight before it runs the app's lifespan shutdown, and
    an event stream never finishes by itself: without this, each open stream would hold a
    stopping worker for the whole graceful-shutdown timeout. Signals can only be handled in the
    main thread; elsewhere (an app run by a test client's thread) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in EXIT_SIGNALS}

    def handler(number: int, frame: FrameType | None) -> None:
        hub.end_streams_soon()
        chained = previous[signal.Signals(number)]
        if callable(chained):
            chained(number, frame)
        elif chained == signal.SIG_DFL:
            signal.signal(number, signal.SIG_DFL)
            signal.raise_signal(number)

    for number in EXIT_SIGNALS:
        signal.signal(number, handler)
    try:
        yield
    finally:
        for number, earlier in previous.items():
            if signal.getsignal(number) is handler and earlier is not None:
                signal.signal(number, earlier)


def asyncpg_connect_args(url: str) -> tuple[str, dict[str, Any]]:
    """A DSN and keyword arguments for `asyncpg.connect`, from a `DATABASE_URL`, translated the
    way the engine's URL is (`sslmode` becomes asyncpg's `ssl`; libpq-only options dropped)."""
    normalised = normalise_database_url(url)
    query = dict(normalised.query)
    options: dict[str, Any] = {}
    ssl = query.pop("ssl", None)
    if ssl is not None:
        options["ssl"] = ssl
    dsn = normalised.set(drivername="postgresql", query=query)
    return dsn.render_as_string(hide_password=False), options


class PostgresRelay:
    """One connection per process to PostgreSQL that LISTENs on both channels and sends this
    process's announcements with `pg_notify`, reconnecting with a backoff when it is lost.

    Announcements never wait for it: `publish` adds the user id to a set that the relay's task
    sends in one statement as soon as the previous one is done. If the connection was lost,
    notifications sent meanwhile were missed, so every local stream is rung once it is back;
    while it is down, streams still read the feed at each heartbeat.
    """

    def __init__(
        self,
        dsn: str,
        options: dict[str, Any],
        *,
        connect_timeout: float,
        keepalive_seconds: float,
    ) -> None:
        self._dsn = dsn
        self._options = options
        self._connect_timeout = connect_timeout
        self._keepalive_seconds = keepalive_seconds
        self._outbox: set[str] = set()
        self._outbox_ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._hub: EventHub | None = None
        self._server_pid: int | None = None

    def attach(self, hub: EventHub) -> None:
        self._hub = hub

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="todo-api events relay")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    def publish(self, user_id: str) -> None:
        self._outbox.add(user_id)
        self._outbox_ready.set()

    async def _run(self) -> None:
        """Connect, serve until the connection is lost, reconnect: at once after a connection
        that served a while, backing off while attempts keep failing (logged once, not at
        every attempt, and again once it works)."""
        delay = RECONNECT_FIRST_DELAY_SECONDS
        connected_before = False
        failing = False
        while True:
            started = time.monotonic()
            problem = None
            try:
                connection = await asyncpg.connect(
                    self._dsn,
                    timeout=self._connect_timeout,
                    server_settings={"application_name": "todo-api events"},
                    **self._options,
                )
            except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
                problem = f"cannot open the LISTEN connection ({type(exc).__name__})"
            else:
                try:
                    await self._serve(connection, connected_before, was_failing=failing)
                except Exception as exc:
                    # Whatever ends the connection ends only the connection: besides its network
                    # and server errors, asyncpg raises InternalClientError ("another operation
                    # is in progress") when the server dies mid-statement. The relay must outlive
                    # them all (CI: a database stopped under load), so it reconnects.
                    problem = f"the LISTEN connection was lost ({type(exc).__name__})"
                finally:
                    connection.terminate()
                connected_before = True
            if time.monotonic() - started > STEADY_AFTER_SECONDS:
                delay, failing = RECONNECT_FIRST_DELAY_SECONDS, False
            if problem is not None and not failing:
                failing = True
                logger.warning(
                    "Live events: %s; retrying. Meanwhile other processes' changes reach this "
                    "one's streams at their next heartbeat.",
                    problem,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_DELAY_SECONDS)

    async def _serve(
        self, connection: asyncpg.Connection, reconnected: bool, *, was_failing: bool
    ) -> None:
        """LISTEN, then send what is announced until the connection is lost."""
        lost = asyncio.Event()

        def on_termination(_connection: asyncpg.Connection) -> None:
            lost.set()
            self._outbox_ready.set()

        connection.add_termination_listener(on_termination)
        self._server_pid = connection.get_server_pid()
        await connection.add_listener(CHANGES_CHANNEL, self._on_notification)
        await connection.add_listener(REMINDERS_CHANNEL, self._on_notification)
        if was_failing:
            logger.info("Live events: listening again")
        if reconnected and self._hub is not None:
            self._hub.ring_everyone()
        while not lost.is_set():
            try:
                async with asyncio.timeout(self._keepalive_seconds):
                    await self._outbox_ready.wait()
            except TimeoutError:
                # Idle: make sure the connection still works (a silently dropped one would
                # deliver nothing and never say so).
                async with asyncio.timeout(self._connect_timeout):
                    await streams_repository.ping(connection)
                continue
            # Let the announcements of the next few milliseconds join this one: under a steady
            # stream of writes, a few NOTIFYs a second instead of one per write.
            await asyncio.sleep(NOTIFY_BATCH_SECONDS)
            self._outbox_ready.clear()
            if lost.is_set():
                break
            user_ids, self._outbox = self._outbox, set()
            if not user_ids:
                continue
            try:
                async with asyncio.timeout(self._connect_timeout):
                    await streams_repository.notify_changes(
                        connection, CHANGES_CHANNEL, sorted(user_ids), USER_SEPARATOR
                    )
            except BaseException:
                self._outbox |= user_ids  # sent again once reconnected
                raise
        raise ConnectionResetError("the LISTEN connection was closed")

    def _on_notification(self, _connection: Any, pid: int, channel: str, payload: str) -> None:
        if self._hub is None:
            return
        if channel == CHANGES_CHANNEL:
            if pid != self._server_pid:  # this process's own were rung when announced
                for user_id in payload.split(USER_SEPARATOR):
                    self._hub.ring(user_id)
            return
        try:
            reminder = json.loads(payload)
            user_id, task_id = reminder["user_id"], uuid.UUID(reminder["task_id"])
        except (ValueError, KeyError, TypeError):
            logger.warning("Live events: ignored a malformed reminder notification")
            return
        if isinstance(user_id, str):
            self._hub.reminder(user_id, task_id)
