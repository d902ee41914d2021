"""The migrations build exactly the schema the models describe, and run both ways."""

import uuid
import warnings
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Boolean, Connection, Uuid, bindparam, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

import todo_api.auth.models
import todo_api.shared_state.models
import todo_api.sync.models
import todo_api.tasks.models  # noqa: F401 (tables register on the metadata)
from tests.conftest import SECRET, stored_tags
from todo_api.config import Settings
from todo_api.db import Base, UTCDateTime, create_engine
from todo_api.migrations import alembic_config, upgrade_to_head

# Alembic compares expression indexes as text, and PostgreSQL gives back its own spelling
# of the CASE expression ("(priority)::text = 'high'::text"); the EXPLAIN tests prove that
# index is the one the queries use.
TEXTUALLY_DIFFERENT_INDEXES = {"ix_tasks_user_id_priority_id"}


@pytest.fixture
async def empty_engine(fresh_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(Settings(database_url=fresh_database_url, better_auth_secret=SECRET))
    yield engine
    await engine.dispose()


def _schema_differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    with warnings.catch_warnings():
        # Both dialects warn that they cannot reflect expression indexes.
        warnings.simplefilter("ignore")
        differences = compare_metadata(context, Base.metadata)
    return [
        diff
        for diff in differences
        if not (
            diff[0] in {"add_index", "remove_index"} and diff[1].name in TEXTUALLY_DIFFERENT_INDEXES
        )
    ]


def _tables_and_indexes(connection: Connection) -> dict[str, set[str]]:
    # Straight from the catalogue: the inspector leaves expression indexes out.
    if connection.dialect.name == "postgresql":
        sql = "SELECT indexname FROM pg_indexes WHERE tablename = :table"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :table"
    return {
        table: set(connection.execute(text(sql), {"table": table}).scalars())
        for table in inspect(connection).get_table_names()
    }


def _downgrade_to_base(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, "base")


async def test_migrations_match_models(empty_engine: AsyncEngine) -> None:
    await upgrade_to_head(empty_engine)
    async with empty_engine.connect() as connection:
        assert await connection.run_sync(_schema_differences) == []
        tables = await connection.run_sync(_tables_and_indexes)
    assert {"users", "tasks"} <= set(tables)
    assert {
        "ix_tasks_user_id_created_at_id",
        "ix_tasks_user_id_updated_at_id",
        "ix_tasks_user_id_title_id",
        "ix_tasks_user_id_due_date_id",
        "ix_tasks_user_id_priority_id",
    } <= tables["tasks"]


async def test_upgrade_is_idempotent_and_downgrade_reverses_it(
    empty_engine: AsyncEngine,
) -> None:
    await upgrade_to_head(empty_engine)
    await upgrade_to_head(empty_engine)
    async with empty_engine.begin() as connection:
        await connection.run_sync(_downgrade_to_base)
    async with empty_engine.connect() as connection:
        tables = await connection.run_sync(_tables_and_indexes)
    assert set(tables) <= {"alembic_version"}
    await upgrade_to_head(empty_engine)
    async with empty_engine.connect() as connection:
        assert {"users", "tasks"} <= set(await connection.run_sync(_tables_and_indexes))


COLUMNS_0001 = {
    "id",
    "user_id",
    "title",
    "description",
    "completed",
    "priority",
    "due_date",
    "created_at",
    "updated_at",
}
COLUMNS_0002 = {
    "tags",
    "recurrence",
    "time_zone",
    "remind_at",
    "completed_at",
    "next_occurrence_id",
    "previous_occurrence_id",
}
COLUMNS_0003 = {"change_seq", "reminder_pending"}


def _alembic(action: str, revision: str) -> Any:
    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)

    return run


def _columns(connection: Connection) -> dict[str, set[str]]:
    inspector = inspect(connection)
    return {
        table: {column["name"] for column in inspector.get_columns(table)}
        for table in inspector.get_table_names()
    }


_INSERT_TASK = text(
    "INSERT INTO tasks (id, user_id, title, completed, created_at, updated_at) "
    "VALUES (:id, 'alice', :title, :completed, :created_at, :updated_at)"
).bindparams(
    bindparam("id", type_=Uuid()),
    bindparam("completed", type_=Boolean()),
    bindparam("created_at", type_=UTCDateTime()),
    bindparam("updated_at", type_=UTCDateTime()),
)


async def test_0002_keeps_existing_tasks_both_ways(empty_engine: AsyncEngine) -> None:
    created = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    done_at = datetime(2026, 1, 3, 4, 5, 6, 654321, tzinfo=UTC)
    pending_id, done_id = uuid.uuid4(), uuid.uuid4()
    sqlite = empty_engine.dialect.name == "sqlite"

    def stored(task_id: uuid.UUID) -> str:
        return task_id.hex if sqlite else str(task_id)

    async with empty_engine.begin() as connection:
        await connection.run_sync(_alembic("upgrade", "0001"))
        assert "tags" not in await connection.run_sync(_columns)
        await connection.execute(
            text(
                "INSERT INTO users (id, created_at, updated_at) VALUES ('alice', :at, :at)"
            ).bindparams(bindparam("at", type_=UTCDateTime())),
            {"at": created},
        )
        for task_id, title, completed, updated in [
            (pending_id, "pending", False, created),
            (done_id, "done", True, done_at),
        ]:
            await connection.execute(
                _INSERT_TASK,
                {
                    "id": task_id,
                    "title": title,
                    "completed": completed,
                    "created_at": created,
                    "updated_at": updated,
                },
            )
    before = await _raw_tasks(empty_engine)
    assert len(before) == 2

    async with empty_engine.begin() as connection:
        await connection.run_sync(_alembic("upgrade", "0002"))
    async with empty_engine.connect() as connection:
        columns = await connection.run_sync(_columns)
    assert columns["tasks"] == COLUMNS_0001 | COLUMNS_0002
    assert {"tags", "task_tags"} <= set(columns)
    after = await _raw_tasks(empty_engine)
    assert set(after) == set(before) == {stored(pending_id), stored(done_id)}
    for stored_id, row in after.items():
        assert {key: row[key] for key in COLUMNS_0001} == before[stored_id]
        assert stored_tags(row["tags"]) == []
        for column in ("recurrence", "time_zone", "remind_at", "next_occurrence_id"):
            assert row[column] is None, column
        assert row["previous_occurrence_id"] is None
    assert after[stored(pending_id)]["completed_at"] is None
    done = after[stored(done_id)]
    assert done["completed_at"] is not None
    assert done["completed_at"] == done["updated_at"]
    async with empty_engine.connect() as connection:
        for table in ("tags", "task_tags"):
            count = await connection.scalar(text(f"SELECT count(*) FROM {table}"))
            assert count == 0, table

    async with empty_engine.begin() as connection:
        await connection.run_sync(_alembic("downgrade", "0001"))
    async with empty_engine.connect() as connection:
        columns = await connection.run_sync(_columns)
    assert columns["tasks"] == COLUMNS_0001
    assert "tags" not in columns
    assert "task_tags" not in columns
    assert await _raw_tasks(empty_engine) == before

    await upgrade_to_head(empty_engine)
    async with empty_engine.connect() as connection:
        columns = await connection.run_sync(_columns)
        assert await connection.run_sync(_schema_differences) == []
    assert columns["tasks"] == COLUMNS_0001 | COLUMNS_0002 | COLUMNS_0003
    assert {"tags", "task_tags"} <= set(columns)
    again = await _raw_tasks(empty_engine)
    assert set(again) == set(before)
    assert again[stored(done_id)]["completed_at"] == again[stored(done_id)]["updated_at"]
    assert again[stored(pending_id)]["completed_at"] is None
    assert stored_tags(again[stored(pending_id)]["tags"]) == []


async def test_0003_numbers_existing_tasks_and_arms_only_future_reminders(
    empty_engine: AsyncEngine,
) -> None:
    """Tasks from before 0003 are numbered in the order they last changed, each user's head is
    their last number, and only reminders still ahead will be announced."""
    now = datetime.now(UTC)
    at = bindparam("at", type_=UTCDateTime())
    async with empty_engine.begin() as connection:
        await connection.run_sync(_alembic("upgrade", "0002"))
        for user in ("alice", "bob"):
            await connection.execute(
                text(
                    "INSERT INTO users (id, created_at, updated_at) VALUES (:u, :at, :at)"
                ).bindparams(at),
                {"u": user, "at": now},
            )
        tasks = [  # (title, owner, last change, reminder)
            ("late", "alice", now - timedelta(hours=1), now + timedelta(days=1)),
            ("early", "alice", now - timedelta(hours=3), now - timedelta(days=1)),
            ("middle", "alice", now - timedelta(hours=2), None),
            ("bobs", "bob", now, None),
        ]
        for title, owner, updated, remind_at in tasks:
            await connection.execute(
                text(
                    "INSERT INTO tasks (id, user_id, title, completed, created_at, updated_at, "
                    "remind_at) VALUES (:id, :owner, :title, :completed, :at, :at, :remind_at)"
                ).bindparams(
                    bindparam("id", type_=Uuid()),
                    bindparam("completed", type_=Boolean()),
                    at,
                    bindparam("remind_at", type_=UTCDateTime()),
                ),
                {
                    "id": uuid.uuid4(),
                    "owner": owner,
                    "title": title,
                    "completed": False,
                    "at": updated,
                    "remind_at": remind_at,
                },
            )
        await connection.run_sync(_alembic("upgrade", "0003"))
    async with empty_engine.connect() as connection:
        numbered = {
            row.title: (row.change_seq, bool(row.reminder_pending))
            for row in await connection.execute(
                text("SELECT title, change_seq, reminder_pending FROM tasks")
            )
        }
        heads: dict[str, int] = {
            row.id: row.change_seq
            for row in await connection.execute(text("SELECT id, change_seq FROM users"))
        }
    assert numbered == {
        "early": (1, False),
        "middle": (2, False),
        "late": (3, True),
        "bobs": (1, False),
    }
    assert heads == {"alice": 3, "bob": 1}

    async with empty_engine.begin() as connection:
        await connection.execute(text("DELETE FROM tasks WHERE title = 'middle'"))
        tombstones = await connection.execute(text("SELECT user_id, seq FROM task_tombstones"))
        assert tombstones.all() == [("alice", 4)]
        await connection.run_sync(_alembic("downgrade", "0002"))
    async with empty_engine.connect() as connection:
        columns = await connection.run_sync(_columns)
    assert columns["tasks"] == COLUMNS_0001 | COLUMNS_0002
    assert "task_tombstones" not in columns
    # The triggers went with it: a delete no longer writes anywhere else.
    async with empty_engine.begin() as connection:
        await connection.execute(text("DELETE FROM tasks WHERE title = 'early'"))


async def _raw_tasks(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    """Every task row as stored, by its id as text."""
    async with engine.connect() as connection:
        result = await connection.execute(text("SELECT * FROM tasks"))
        rows = [dict(row._mapping) for row in result]
    return {str(row["id"]): row for row in rows}
