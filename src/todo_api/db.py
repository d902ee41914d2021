"""Database plumbing: URL normalisation, the engine and its pool, shared column types."""

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Dialect, MetaData, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
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

PING_AFTER_IDLE_SECONDS = 10.0

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
            # Unnamed statements: a named one would stay allocated on whichever server
            # connection the pooler picked, piling up there until it recycles the connection.
            "prepared_statement_name_func": lambda: "",
        }
    engine = create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        connect_args=connect_args,
    )
    _ping_idle_connections(engine)
    return engine


def _ping_idle_connections(engine: AsyncEngine) -> None:
    """Pre-ping a pooled connection before use, if it sat idle for a while.

    A connection in steady use has just proven itself, and pinging it on every checkout would
    double the round trips of a one-statement request. An idle one may have been cut by the
    server, a proxy or a failover; a failed ping makes the pool replace it.
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def _remember_idle_since(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # whatever the driver raises, the connection is unusable
            raise DisconnectionError() from exc


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
