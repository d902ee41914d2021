"""Database plumbing: URL normalisation, the engine, the request session, shared column types."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Dialect, MetaData, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

from todo_api.config import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# libpq options that asyncpg does not understand; `sslmode` is translated to `ssl` instead.
_LIBPQ_ONLY_OPTIONS = {"sslmode", "channel_binding", "gssencmode", "target_session_attrs"}


class Base(DeclarativeBase):
    """Declarative base for every table, with a constraint naming convention for migrations."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime reached the database layer")
        value = value.astimezone(UTC)
        # SQLite compares the stored text, so every value must be written in one format.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, timezone-aware, as every timestamp the server sets."""
    return datetime.now(UTC)


def normalise_database_url(raw: str) -> URL:
    """Map `postgres://`, `postgresql://` and `sqlite://` URLs onto the async drivers.

    Neon-style `sslmode=require&channel_binding=require` is translated for asyncpg, which takes
    `ssl=` and negotiates channel binding by itself.
    """
    url = make_url(
        raw.replace("postgres://", "postgresql://", 1) if raw.startswith("postgres://") else raw
    )
    backend = url.get_backend_name()
    if backend == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    if backend != "postgresql":
        raise ValueError(
            f"unsupported database URL scheme {url.drivername!r}; use postgresql or sqlite"
        )
    query = {k: v for k, v in url.query.items() if k not in _LIBPQ_ONLY_OPTIONS}
    sslmode = url.query.get("sslmode")
    if isinstance(sslmode, str) and sslmode != "disable" and "ssl" not in query:
        query["ssl"] = sslmode
    return url.set(drivername="postgresql+asyncpg", query=query)


def create_engine(settings: Settings) -> AsyncEngine:
    """One engine (and so one pool) per worker process."""
    url = normalise_database_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite":
        return _create_sqlite_engine(url)
    connect_args: dict[str, Any] = {}
    if not settings.db_statement_cache:
        # PgBouncer / Neon pooler in transaction mode: no named statements may outlive a query.
        url = url.update_query_dict({"prepared_statement_cache_size": "0"})
        connect_args = {
            "statement_cache_size": 0,
            "prepared_statement_name_func": lambda: f"__asyncpg_{uuid.uuid4()}__",
        }
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_pre_ping=True,
        connect_args=connect_args,
    )


def _create_sqlite_engine(url: URL) -> AsyncEngine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _configure(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # Objects stay readable after commit: responses are serialised once the transaction is over.
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def session_scope(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A unit of work: commit when the block ends normally, roll back when it raises."""
    async with factory() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()
