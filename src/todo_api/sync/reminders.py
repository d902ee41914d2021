"""Reminder delivery (SPEC §11): a `task.reminder` event once per reminder, when its
`remind_at` passes, exactly once across every worker and instance.

The database keeps the queue: `tasks.reminder_pending` is set by migration 0003's trigger
whenever `remind_at` is set or moved (and cleared when it is cleared), and the partial index
`ix_tasks_reminder_due` holds exactly the armed reminders. Every worker process runs one
`ReminderWorker`; each round it claims the due reminders by clearing their flag, and only the
claimer announces them:

- PostgreSQL: one statement claims a batch (`FOR UPDATE SKIP LOCKED`, so concurrent claimers
  take disjoint rows and never wait on each other) and, in the same statement, sends
  `pg_notify('todo_api_reminders', {"user_id", "task_id"})` for each claimed pending task.
  PostgreSQL delivers a notification only when its transaction commits, so the claim and the
  announcement commit together or not at all: a process that dies in between has claimed
  nothing and announced nothing. Every worker's event hub LISTENs and turns the notification
  into a local `EventHub.reminder()` call for that user's streams.
- SQLite (one process): the same claim, committed, then `EventHub.reminder()` directly.

Clearing `reminder_pending` alone does not fire the change-numbering trigger, so delivering a
reminder is not a change of the task: no feed entry, no new `updated_at` or ETag.
"""

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Text,
    bindparam,
    case,
    cast,
    func,
    literal,
    literal_column,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from todo_api.db import UTCDateTime, pooled_connection, utcnow
from todo_api.errors import ServiceUnavailable
from todo_api.observability import redacted_traceback
from todo_api.sync.events import REMINDERS_CHANNEL
from todo_api.tasks.models import columns, tasks_table

if TYPE_CHECKING:
    from todo_api.runtime import ConnectionTurns

logger = logging.getLogger(__name__)

# Reminders claimed per statement; a full batch is followed by the next one at once.
CLAIM_BATCH = 100
# While the database fails, rounds back off from the poll interval to this.
MAX_BACKOFF_SECONDS = 15.0
# While it keeps failing, say so at most this often (the first failure is logged at once).
FAILURE_LOG_INTERVAL_SECONDS = 300.0
# On shutdown, a round in flight may finish within this; past it, it is cancelled.
STOP_GRACE_SECONDS = 2.0


# Delivers one reminder to this process's streams: `EventHub.reminder(user_id, task_id)`.
Deliver = Callable[[str, uuid.UUID], None]


@dataclass(frozen=True, slots=True)
class ClaimedReminder:
    """A reminder taken off the queue; `announced` is False for a completed task's."""

    task_id: uuid.UUID
    user_id: str
    announced: bool


# The partial index's predicate spelt as the index spells it, so that both planners use the
# index (as a Boolean column SQLite would get `reminder_pending = 1`, which its planner does
# not match with the index's `WHERE reminder_pending`).
_pending: ColumnElement[Any] = literal_column("tasks.reminder_pending")


def due_reminders(now: ColumnElement[Any]) -> Select[Any]:
    """The ids of the earliest armed reminders due by `now`, at most one batch, read from the
    partial index `ix_tasks_reminder_due`."""
    return (
        select(columns.id)
        .where(_pending, columns.remind_at <= now)
        .order_by(columns.remind_at)
        .limit(CLAIM_BATCH)
    )


def _claim(due: Select[Any]) -> Any:
    return (
        update(tasks_table)
        .where(columns.id.in_(due.scalar_subquery()))
        .values(reminder_pending=False)
        .returning(columns.id, columns.user_id, columns.completed, columns.remind_at)
    )


# PostgreSQL: claim and announce in one statement (one round trip, its own transaction), by
# the database's clock, which every instance shares. RETURNING comes in no particular order:
# the claimed rows are sorted before they are announced, so streams hear them in due order.
_claimed = _claim(due_reminders(func.now()).with_for_update(skip_locked=True)).cte("claimed")
_in_due_order = select(_claimed).order_by(_claimed.c.remind_at, _claimed.c.id).subquery()
_payload = func.json_build_object(
    literal("user_id", Text), _in_due_order.c.user_id, literal("task_id", Text), _in_due_order.c.id
)
CLAIM_AND_NOTIFY = select(
    _in_due_order,
    case(
        (
            ~_in_due_order.c.completed,
            func.pg_notify(literal(REMINDERS_CHANNEL, Text), cast(_payload, Text)),
        )
    ).label("notified"),
)

# SQLite: one process, whose clock is the only one; the claimer announces after the commit.
CLAIM = _claim(due_reminders(bindparam("now", type_=UTCDateTime())))


class ReminderWorker:
    """Claims due reminders every `REMINDER_POLL_SECONDS`, in a task of its own started with
    the app and stopped with it; it survives database outages (backing off, and logging the
    outage once, not every round)."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        autocommit: AsyncEngine,
        turns: "ConnectionTurns",
        poll_seconds: float,
        deliver: Deliver,
        one_transaction_per_statement: bool,
    ) -> None:
        self._engine = engine
        self._autocommit = autocommit
        self._turns = turns
        self._poll_seconds = poll_seconds
        self._deliver = deliver
        self._one_transaction_per_statement = one_transaction_per_statement
        self._postgresql = engine.dialect.name == "postgresql"
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run the rounds in the background; the first one a poll interval from now."""
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._run(), name="todo-api reminders")

    async def close(self) -> None:
        """Stop: a round in flight may finish (briefly), then the task is gone."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()
        _, pending = await asyncio.wait({task}, timeout=STOP_GRACE_SECONDS)
        if pending:
            task.cancel()
        with suppress(asyncio.CancelledError):
            await task

    async def claim_due(self) -> list[ClaimedReminder]:
        """Claim up to `CLAIM_BATCH` due reminders, oldest first, and announce those of tasks
        still pending; a completed task's reminder is claimed without a word."""
        if self._postgresql:
            async with self._connection() as connection:
                rows = (await connection.execute(CLAIM_AND_NOTIFY)).all()
        else:
            async with self._connection() as connection:
                rows = (await connection.execute(CLAIM, {"now": utcnow()})).all()
        claims = [
            ClaimedReminder(row.id, row.user_id, not row.completed)
            for row in sorted(rows, key=lambda row: (row.remind_at, row.id))
        ]
        if not self._postgresql:
            # Committed: only now may the streams hear of it.
            for claim in claims:
                if claim.announced:
                    self._deliver(claim.user_id, claim.task_id)
        return claims

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection]:
        pooled = pooled_connection(
            self._engine,
            self._autocommit,
            one_transaction_per_statement=self._one_transaction_per_statement,
        )
        async with self._turns.turn(), pooled as connection:
            yield connection

    async def _run(self) -> None:
        delay = self._poll_seconds
        failures = 0
        last_logged = 0.0
        while not await self._stopped_within(delay):
            try:
                # A full batch means more may be due: claim again at once.
                while len(await self.claim_due()) == CLAIM_BATCH and not self._stop.is_set():
                    pass
            except Exception as exc:  # the loop must outlive any one round's failure
                failures += 1
                if failures == 1 or time.monotonic() - last_logged >= FAILURE_LOG_INTERVAL_SECONDS:
                    last_logged = time.monotonic()
                    _log_failure(exc, failures)
                delay = min(max(delay * 2, self._poll_seconds), MAX_BACKOFF_SECONDS)
                continue
            if failures:
                logger.info(
                    "reminders: delivering again after %d failed rounds",
                    failures,
                    extra={"failed_rounds": failures},
                )
            failures = 0
            delay = self._poll_seconds

    async def _stopped_within(self, seconds: float) -> bool:
        """Wait `seconds`, or less if `close()` is called meanwhile; True if it was."""
        with suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()
        return self._stop.is_set()


def _log_failure(exc: Exception, failures: int) -> None:
    if _is_outage(exc):
        # An outage says nothing new past its class: no traceback, and no message (a driver's
        # can quote data).
        logger.warning(
            "reminders: the database is unavailable (%s); retrying with back-off",
            type(exc).__name__,
            extra={"failed_rounds": failures},
        )
    else:
        logger.error(
            "reminders: a round failed; retrying with back-off",
            extra={"failed_rounds": failures, "exception": redacted_traceback(exc)},
        )


def _is_outage(exc: Exception) -> bool:
    """Whether the database could not answer now (rather than a bug): db.py translates
    PostgreSQL's outages into `ServiceUnavailable`; a refused connect arrives as `OSError`, a
    pool with no free connection as its time-out, a locked SQLite file as `OperationalError`."""
    if isinstance(exc, ServiceUnavailable | OSError | PoolTimeoutError):
        return True
    return isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or isinstance(exc, OperationalError)
    )
