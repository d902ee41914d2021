"""Reminder delivery in one process (`sync/reminders.py`): each due reminder is claimed once,
moving `remind_at` arms it again, clearing it or deleting the task disarms it, a completed
task's reminder is claimed without a word, and a claim is no change of the task (no feed
entry, same `updated_at` and ETag). On PostgreSQL also: concurrent claimers share the work
without a reminder claimed twice or lost, each announcement is one NOTIFY, and the loop rides
out a database that stops answering, says so once, and stops promptly.

The app's own rounds are set an hour apart here, so the test runs every claim itself."""

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import func, text

from tests.conftest import DatabaseProbe, TaskFactory, asyncpg_dsn, auth, running
from todo_api.config import Settings
from todo_api.sync import reminders as reminders_module
from todo_api.sync.events import REMINDERS_CHANNEL
from todo_api.sync.reminders import CLAIM_BATCH, ClaimedReminder, ReminderWorker

postgresql_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The app's own rounds an hour apart: each test claims when it means to."""
    return settings.model_copy(update={"reminder_poll_seconds": 3600.0})


def worker(app: FastAPI) -> ReminderWorker:
    reminders: ReminderWorker = app.state.runtime.reminders
    return reminders


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def ago(**delta: float) -> str:
    return iso(datetime.now(UTC) - timedelta(**delta))


def ahead(**delta: float) -> str:
    return iso(datetime.now(UTC) + timedelta(**delta))


def claimed(task: dict[str, Any], *, announced: bool = True) -> ClaimedReminder:
    return ClaimedReminder(uuid.UUID(task["id"]), task["user_id"], announced)


async def armed(db: DatabaseProbe, task: dict[str, Any]) -> bool:
    row = await db.task(task["id"])
    assert row is not None
    return bool(row["reminder_pending"])


async def test_a_due_reminder_is_claimed_once_and_is_no_change_of_the_task(
    app: FastAPI, client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    due = await create_task(title="Call the bank", remind_at=ago(minutes=1))
    later = await create_task(title="Later", remind_at=ahead(hours=1))
    quiet = await create_task(title="No reminder")
    assert [await armed(db, task) for task in (due, later, quiet)] == [True, True, False]
    before = await db.task(due["id"])
    synced = (await client.get("/api/tasks/changes", headers=auth())).json()
    etag = (await client.get(f"/api/tasks/{due['id']}", headers=auth())).headers["etag"]

    assert await worker(app).claim_due() == [claimed(due)]
    assert await worker(app).claim_due() == []

    after = await db.task(due["id"])
    assert after is not None
    assert before is not None
    assert not after["reminder_pending"]
    # Nothing else moved: not the change number, not `updated_at`.
    assert {**after, "reminder_pending": None} == {**before, "reminder_pending": None}
    changes = await client.get(f"/api/tasks/changes?since={synced['cursor']}", headers=auth())
    assert changes.json() == {"changes": [], "cursor": synced["cursor"], "has_more": False}
    read = await client.get(f"/api/tasks/{due['id']}", headers=auth())
    assert read.json() == due
    assert read.headers["etag"] == etag
    assert await armed(db, later)


async def test_moving_remind_at_arms_it_again_and_other_edits_do_not(
    app: FastAPI, client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    task = await create_task(remind_at=ago(minutes=5))
    url = f"/api/tasks/{task['id']}"
    assert await worker(app).claim_due() == [claimed(task)]

    # Editing something else after the reminder went out does not send it again.
    renamed = await client.patch(url, json={"title": "Renamed"}, headers=auth())
    assert renamed.status_code == 200
    assert not await armed(db, task)
    assert await worker(app).claim_due() == []

    # Another moment, already past: due at once, once.
    moved = await client.patch(url, json={"remind_at": ago(minutes=1)}, headers=auth())
    assert moved.status_code == 200
    assert await armed(db, task)
    assert await worker(app).claim_due() == [claimed(task)]
    assert await worker(app).claim_due() == []

    # A moment ahead: armed, not due yet.
    ahead_ = await client.patch(url, json={"remind_at": ahead(hours=2)}, headers=auth())
    assert ahead_.status_code == 200
    assert await armed(db, task)
    assert await worker(app).claim_due() == []


async def test_clearing_remind_at_or_deleting_the_task_disarms_it(
    app: FastAPI, client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    cleared = await create_task(title="Cleared", remind_at=ago(minutes=1))
    deleted = await create_task(title="Deleted", remind_at=ago(minutes=1))
    future = await create_task(title="Cleared before it was due", remind_at=ahead(hours=1))
    for task in (cleared, future):
        response = await client.patch(
            f"/api/tasks/{task['id']}", json={"remind_at": None}, headers=auth()
        )
        assert response.status_code == 200
        assert not await armed(db, task)
    response = await client.delete(f"/api/tasks/{deleted['id']}", headers=auth())
    assert response.status_code == 204

    assert await worker(app).claim_due() == []
    assert await db.rows("SELECT id FROM tasks WHERE reminder_pending") == []


async def test_a_completed_tasks_reminder_is_claimed_without_a_word(
    app: FastAPI, client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    done = await create_task(title="Done already", remind_at=ago(minutes=1))
    open_ = await create_task(title="Still open", remind_at=ago(minutes=2))
    response = await client.patch(
        f"/api/tasks/{done['id']}/complete", json={"completed": True}, headers=auth()
    )
    assert response.status_code == 200

    claims = await worker(app).claim_due()
    assert claims == [claimed(open_), claimed(done, announced=False)]  # oldest first
    # Taken off the queue all the same: opening the task again does not bring it back late.
    reopened = await client.patch(
        f"/api/tasks/{done['id']}/complete", json={"completed": False}, headers=auth()
    )
    assert reopened.status_code == 200
    assert not await armed(db, done)
    assert await worker(app).claim_due() == []


async def hub_listening(db: DatabaseProbe) -> None:
    """On PostgreSQL, wait until the app's event hub LISTENs on the reminders channel (its
    connection opens in the background at start-up); on SQLite there is nothing to wait for."""
    if db.engine.dialect.name != "postgresql":
        return
    deadline = time.monotonic() + 5
    while not await db.rows(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = 'todo-api events' AND query LIKE :listen",
        listen=f"LISTEN%{REMINDERS_CHANNEL}%",
    ):
        assert time.monotonic() < deadline, "the event hub never listened"
        await asyncio.sleep(0.05)


async def test_the_users_streams_hear_the_reminder_and_nobody_elses_do(
    app: FastAPI, client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    """Through the app's own event hub (in memory on SQLite, LISTEN/NOTIFY on PostgreSQL)."""
    hub = app.state.runtime.events
    await hub_listening(db)
    due = await create_task(title="Due", remind_at=ago(seconds=30))
    done = await create_task(title="Done", remind_at=ago(seconds=20), completed=True)
    bobs = await create_task("bob", title="Bob's", remind_at=ago(seconds=10))
    with hub.subscribe("alice") as alice, hub.subscribe("alice") as alice_again:
        claims = await worker(app).claim_due()
        deadline = time.monotonic() + 5
        while len(alice.reminders) + len(alice_again.reminders) < 2:
            assert time.monotonic() < deadline, "the reminder never reached the streams"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # time for anything more to arrive
        heard = [list(alice.reminders), list(alice_again.reminders)]
    assert claims == [claimed(due), claimed(done, announced=False), claimed(bobs)]
    assert heard == [[uuid.UUID(due["id"])]] * 2


async def test_a_recurring_tasks_next_occurrence_has_its_reminder_armed(
    app: FastAPI, client: AsyncClient, create_task: TaskFactory
) -> None:
    due = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    task = await create_task(
        title="Water the plants",
        due_date=iso(due),
        remind_at=iso(due - timedelta(minutes=30)),
        recurrence="FREQ=DAILY",
    )
    assert await worker(app).claim_due() == [claimed(task)]
    completed = await client.patch(f"/api/tasks/{task['id']}/complete", headers=auth())
    assert completed.status_code == 200
    successor_id = completed.json()["next_occurrence_id"]
    successor = (await client.get(f"/api/tasks/{successor_id}", headers=auth())).json()
    assert successor["remind_at"] == iso(due + timedelta(days=1) - timedelta(minutes=30))

    assert await worker(app).claim_due() == [claimed(successor)]
    assert await worker(app).claim_due() == []


async def test_due_reminders_are_claimed_oldest_first_a_batch_at_a_time(
    app: FastAPI, create_task: TaskFactory
) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    # Created latest reminder first: the claim's order is `remind_at`'s, not the rows'.
    created = [
        await create_task(title=f"r{n}", remind_at=iso(start - timedelta(seconds=n)))
        for n in range(CLAIM_BATCH + 1)
    ]
    oldest_first = [claimed(task) for task in reversed(created)]

    assert await worker(app).claim_due() == oldest_first[:CLAIM_BATCH]
    assert await worker(app).claim_due() == oldest_first[CLAIM_BATCH:]
    assert await worker(app).claim_due() == []


async def test_the_claim_reads_the_partial_index_of_armed_reminders(
    app: FastAPI, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    await create_task(remind_at=ahead(hours=1))
    due = reminders_module.due_reminders(func.now())
    sql = str(due.compile(db.engine, compile_kwargs={"literal_binds": True}))
    async with db.engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(text("SET enable_seqscan = off"))
            plan = (await connection.execute(text(f"EXPLAIN {sql}"))).scalars().all()
        else:
            rows = (await connection.execute(text(f"EXPLAIN QUERY PLAN {sql}"))).all()
            plan = [str(row[-1]) for row in rows]
    assert any("ix_tasks_reminder_due" in line for line in plan), plan


# --- PostgreSQL: several claimers, NOTIFY, outages, shutdown -------------------------------------


@dataclass
class Heard:
    """Every payload NOTIFYed on the reminders channel, in order, parsed."""

    payloads: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def hear(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        self.payloads.append(json.loads(payload))
        self.arrived.set()

    async def settle(self, count: int) -> list[dict[str, Any]]:
        """Wait for `count` payloads (at most 5 s), then a moment more, for any extra one."""
        with suppress(TimeoutError):
            async with asyncio.timeout(5):
                while len(self.payloads) < count:
                    self.arrived.clear()
                    await self.arrived.wait()
        await asyncio.sleep(0.2)
        return self.payloads


@asynccontextmanager
async def listening(database_url: str) -> AsyncIterator[Heard]:
    heard = Heard()
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    await connection.add_listener(REMINDERS_CHANNEL, heard.hear)
    try:
        yield heard
    finally:
        await connection.close()


@pytest.mark.postgres
@postgresql_only
@pytest.mark.parametrize("statement_cache", [True, False], ids=["direct", "behind-a-pooler"])
async def test_each_announcement_is_one_notify_after_the_claim_committed(
    app: FastAPI,
    settings: Settings,
    create_task: TaskFactory,
    database_url: str,
    statement_cache: bool,
) -> None:
    """Directly, the claim is one autocommitted statement; behind a transaction pooler
    (`DB_STATEMENT_CACHE=false`) it runs inside an explicit transaction. Either way: one
    NOTIFY per pending task, none for a completed one."""
    due = await create_task(title="Announce me", remind_at=ago(seconds=10))
    done = await create_task(title="Done", remind_at=ago(seconds=20), completed=True)
    pooled = settings.model_copy(update={"db_statement_cache": statement_cache})
    async with running(pooled) as (claiming_app, _), listening(database_url) as heard:
        claims = await worker(claiming_app).claim_due()
        payloads = await heard.settle(1)
    assert claims == [claimed(done, announced=False), claimed(due)]
    assert payloads == [{"user_id": "alice", "task_id": due["id"]}]


@pytest.mark.postgres
@postgresql_only
async def test_concurrent_claimers_share_the_reminders_without_a_duplicate(
    app: FastAPI, settings: Settings, create_task: TaskFactory, db: DatabaseProbe, database_url: str
) -> None:
    count = 3 * CLAIM_BATCH + 17
    await create_task(title="first")  # the user's row
    async with db.engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO tasks (id, user_id, title, created_at, updated_at, remind_at)"
                " SELECT gen_random_uuid(), 'alice', 'r' || n, now(), now(),"
                "        now() - n * interval '1 millisecond'"
                " FROM generate_series(1, :count) AS n"
            ),
            {"count": count},
        )
    expected = {row["id"] for row in await db.rows("SELECT id FROM tasks WHERE reminder_pending")}
    assert len(expected) == count

    async def drain(claimer: ReminderWorker) -> list[ClaimedReminder]:
        taken: list[ClaimedReminder] = []
        while batch := await claimer.claim_due():
            taken += batch
        return taken

    async with running(settings) as (other_app, _), listening(database_url) as heard:
        claimers = [worker(app), worker(other_app)] * 3
        results = await asyncio.gather(*(drain(claimer) for claimer in claimers))
        payloads = await heard.settle(count)
    taken = [claim.task_id for result in results for claim in result]
    assert len(taken) == len(set(taken)) == count
    assert set(taken) == expected
    assert sum(1 for result in results if result) >= 2, "one claimer did all the work"
    announced = [uuid.UUID(payload["task_id"]) for payload in payloads]
    assert len(announced) == len(set(announced)) == count
    assert set(announced) == expected
    assert await db.rows("SELECT id FROM tasks WHERE reminder_pending") == []


@asynccontextmanager
async def tasks_locked(database_url: str) -> AsyncIterator[None]:
    """Writes to `tasks` (and row locks on it) wait while inside; plain reads go on."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        async with connection.transaction():
            await connection.execute("LOCK TABLE tasks IN EXCLUSIVE MODE")
            yield
    finally:
        await connection.close()


async def wait_until_disarmed(db: DatabaseProbe, task: dict[str, Any], seconds: float) -> float:
    started = time.monotonic()
    while await armed(db, task):
        assert time.monotonic() - started < seconds, "the reminder was not delivered"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.postgres
@postgresql_only
async def test_the_loop_rides_out_a_database_that_does_not_answer_and_says_so_once(
    settings: Settings,
    create_task: TaskFactory,
    db: DatabaseProbe,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=reminders_module.__name__)
    fast = settings.model_copy(update={"reminder_poll_seconds": 0.05, "db_statement_timeout": 0.3})
    first = await create_task(title="Before the outage", remind_at=ago(seconds=1))
    async with running(fast):
        await wait_until_disarmed(db, first, seconds=2)
        # Due a moment after the lock is taken: within it, every round times out.
        second = await create_task(title="During the outage", remind_at=ahead(seconds=0.3))
        async with tasks_locked(database_url):
            await asyncio.sleep(1.5)
            assert await armed(db, second)
        recovered_in = await wait_until_disarmed(db, second, seconds=5)
    print(f"\nreminder delivered {recovered_in:.2f} s after the database answered again")

    records = [r for r in caplog.records if r.name == reminders_module.__name__]
    warnings = [r for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in records]
    assert "DatabaseTimedOut" in warnings[0].getMessage()
    resumed = [r for r in records if r.levelno == logging.INFO]
    assert len(resumed) == 1
    assert getattr(resumed[0], "failed_rounds", 0) >= 2
    assert all(r.levelno < logging.ERROR for r in records)


@pytest.mark.postgres
@postgresql_only
async def test_shutdown_is_prompt_even_with_a_round_stuck_in_the_database(
    settings: Settings, create_task: TaskFactory, db: DatabaseProbe, database_url: str
) -> None:
    # The default statement time-out (5 s): a round waiting on the lock would outlast the grace.
    slow = settings.model_copy(update={"reminder_poll_seconds": 0.05})
    task = await create_task(title="Never claimed", remind_at=ago(seconds=1))
    async with tasks_locked(database_url):
        async with running(slow):
            await asyncio.sleep(0.5)  # a round is waiting for the lock now
            stopping = time.monotonic()
        stopped_in = time.monotonic() - stopping
    assert stopped_in < reminders_module.STOP_GRACE_SECONDS + 1.0, stopped_in
    assert await armed(db, task), "a cancelled round claimed the reminder"

    idle = settings.model_copy(update={"reminder_poll_seconds": 3600.0})
    async with running(idle):
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 0.5
