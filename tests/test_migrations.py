"""The migrations build exactly the schema the models describe, and run both ways."""

import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

import todo_api.auth.models
import todo_api.tasks.models  # noqa: F401 (tables register on the metadata)
from tests.conftest import SECRET
from todo_api.config import Settings
from todo_api.db import Base, create_engine
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
