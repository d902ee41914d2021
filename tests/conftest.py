"""Shared fixtures: an app per test on SQLite and on a real PostgreSQL, signed tokens, and a
probe that reads the database directly so tests can assert what was (not) written."""

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import jwt
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from pydantic import AliasChoices
from redis import Redis as SyncRedis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from todo_api.app import create_app
from todo_api.config import Settings
from todo_api.db import create_engine
from todo_api.migrations import upgrade_to_head

SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# A per-minute rate limit no test reaches unless it means to.
NEVER_REFUSED = 1_000_000
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TODO_API = str(Path(sys.executable).parent / "todo-api")


def settings_env_names() -> set[str]:
    """Every environment variable `Settings` reads, lower-cased (it matches case-insensitively)."""
    names: set[str] = set()
    for field_name, field in Settings.model_fields.items():
        names.add(field_name)
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(choice for choice in alias.choices if isinstance(choice, str))
        elif isinstance(alias, str):
            names.add(alias)
        if field.alias:
            names.add(field.alias)
    return {name.lower() for name in names}


# What `todo-api serve` reads besides `Settings` (its command-line defaults).
SERVE_ENV_NAMES = {"host", "port", "workers"}


def environment_without_settings() -> dict[str, str]:
    """The outer environment minus anything `Settings` or `todo-api serve` would read, for CLI
    subprocesses."""
    names = settings_env_names() | SERVE_ENV_NAMES
    return {key: value for key, value in os.environ.items() if key.lower() not in names}


# The Redis of the shared-state tests (`TEST_REDIS_URL`, else the local one, on a database
# number of its own); each test uses keys under a prefix of its own and deletes them.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"


def redis_test_url() -> str:
    """The tests' Redis URL, once it answers: required under CI=true, else the test is
    skipped when none answers."""
    url = os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS_URL)
    client = SyncRedis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except RedisError as error:
        message = f"Redis not reachable at {url} ({error})"
        if IN_CI:
            pytest.fail(f"{message} (CI=true makes Redis required)")
        pytest.skip(f"{message}; set TEST_REDIS_URL to run the Redis tests")
    finally:
        client.close()
    return url


def _admin_url() -> str:
    return os.environ.get("TEST_DATABASE_URL", DEFAULT_ADMIN_URL)


def asyncpg_dsn(url: str) -> str:
    """A libpq-style URL asyncpg takes, from a SQLAlchemy-style one."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _postgres_answers(url: str) -> bool:
    try:
        connection = await asyncpg.connect(asyncpg_dsn(url), timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await connection.close()
    return True


async def _migrate(url: str) -> None:
    engine = create_engine(Settings(database_url=url, better_auth_secret=SECRET))
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """A server to create throwaway databases on; required under CI=true, else skipped."""
    url = _admin_url()
    if not asyncio.run(_postgres_answers(url)):
        message = f"PostgreSQL not reachable at {make_url(url).render_as_string()}"
        if IN_CI:
            pytest.fail(f"{message} (CI=true makes PostgreSQL required)")
        pytest.skip(f"{message}; set TEST_DATABASE_URL to run the PostgreSQL tests")
    return url


async def _execute(dsn: str, sql: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@contextmanager
def throwaway_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the admin URL's server, as a plain libpq-style URL;
    dropped afterwards, connections and all. Call it outside a running event loop."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = asyncpg_dsn(admin_url)
    asyncio.run(_execute(admin, f'CREATE DATABASE "{name}"'))
    try:
        yield asyncpg_dsn(
            make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        )
    finally:
        asyncio.run(_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def fetch(url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Rows of one query on its own connection, as dicts: what the database really holds."""
    connection = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
    try:
        return [dict(row) for row in await connection.fetch(sql, *args)]
    finally:
        await connection.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A brand-new, empty database (nothing migrated), dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    admin_url: str = request.getfixturevalue("postgres_admin_url")
    with throwaway_database(admin_url, "todo_api_fresh") as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session, dropped afterwards."""
    with throwaway_database(postgres_admin_url, "todo_api_test") as url:
        asyncio.run(_migrate(url))
        yield url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'todo.db'}"
    asyncio.run(_migrate(url))
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each data test runs once per database."""
    url: str = request.getfixturevalue(f"{request.param.removesuffix('ql')}_url")
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        better_auth_secret=SECRET,
        environment="test",
        data_dir=tmp_path,
        auto_migrate=False,
        log_format="json",
        db_pool_size=20,
        # No background round in the middle of a test that counts statements; the reminder
        # tests run their rounds themselves.
        reminder_poll_seconds=3600,
        # The limiter stays on (its headers on every answer) but never refuses: tests that
        # send many requests as one user are about something else (tests/api/test_rate_limits.py).
        rate_limit_per_minute=NEVER_REFUSED,
    )


# In an order that SQLite's row-by-row deletes allow (deleting tasks writes tombstones).
TABLES = (
    "rate_limit_windows",
    "login_failures",
    "login_known_clients",
    "idempotency_keys",
    "stream_tickets",
    "event_streams",
    "task_tags",
    "tags",
    "tasks",
    "task_tombstones",
    "users",
)


async def _empty_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(text(f"TRUNCATE {', '.join(TABLES)}"))
        else:
            for table in TABLES:
                await connection.execute(text(f"DELETE FROM {table}"))


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, AsyncClient]]:
    """An app started with `settings`, and a client for it."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield app, client


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The real app, started (lifespan run) on an empty database."""
    application = create_app(settings)
    await _empty_tables(application.state.runtime.engine)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=app, raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def make_token(
    sub: str | None = "alice", *, secret: str = SECRET, ttl: int = 600, **claims: Any
) -> str:
    """A real HS256 token; pass `exp=None` or `sub=None` to leave a claim out."""
    now = int(time.time())
    payload: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + ttl, **claims}
    payload = {key: value for key, value in payload.items() if value is not None}
    return jwt.encode(payload, secret, algorithm="HS256")


def auth(sub: str = "alice", **claims: Any) -> dict[str, str]:
    """Headers for a request as user `sub`."""
    return {"Authorization": f"Bearer {make_token(sub, **claims)}"}


# Every field of a task as the API answers it (SPEC §6 and §10).
TASK_FIELDS = {
    "id",
    "user_id",
    "title",
    "description",
    "completed",
    "priority",
    "due_date",
    "tags",
    "recurrence",
    "time_zone",
    "remind_at",
    "completed_at",
    "next_occurrence_id",
    "created_at",
    "updated_at",
}


def stored_tags(value: Any) -> list[str]:
    """`tasks.tags` as read raw: JSON text on SQLite, a text array on PostgreSQL."""
    if isinstance(value, str):
        value = json.loads(value)
    assert isinstance(value, list), value
    return [str(name) for name in value]


@dataclass
class DatabaseProbe:
    """Reads rows straight from the database, bypassing the API under test."""

    engine: AsyncEngine

    async def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        async with self.engine.connect() as connection:
            result = await connection.execute(text(sql), params)
            return [dict(row._mapping) for row in result]

    def task_key(self, task_id: str) -> Any:
        """A task id as a raw SQL parameter: SQLite stores UUIDs as 32 hex digits,
        PostgreSQL as uuid."""
        key = uuid.UUID(task_id)
        return key.hex if self.engine.dialect.name == "sqlite" else key

    async def task(self, task_id: str) -> dict[str, Any] | None:
        rows = await self.rows("SELECT * FROM tasks WHERE id = :id", id=self.task_key(task_id))
        return rows[0] if rows else None

    async def count_tasks(self, user_id: str | None = None) -> int:
        if user_id is None:
            rows = await self.rows("SELECT count(*) AS n FROM tasks")
        else:
            rows = await self.rows("SELECT count(*) AS n FROM tasks WHERE user_id = :u", u=user_id)
        return int(rows[0]["n"])


@pytest.fixture
def db(app: FastAPI) -> DatabaseProbe:
    return DatabaseProbe(app.state.runtime.engine)


TaskFactory = Callable[..., Any]


@pytest.fixture
def create_task(client: AsyncClient) -> TaskFactory:
    """POST a task as `user` and return its JSON (asserting the 201)."""

    async def create(user: str = "alice", **fields: Any) -> dict[str, Any]:
        body = {"title": "A task", **fields}
        response = await client.post("/api/tasks", json=body, headers=auth(user))
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    return create
