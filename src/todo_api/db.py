"""Database plumbing: URL normalisation, the engine and its pool, shared column types."""

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import DateTime, Dialect, MetaData, event
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry, PoolProxiedConnection
from sqlalchemy.types import TypeDecorator

from todo_api.config import Settings
from todo_api.errors import ConcurrentChange, DatabaseTimedOut, DatabaseUnavailable

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

# SQLSTATEs that say the server is going away or cannot take the session, not that the
# statement was wrong: admin shutdown, crash shutdown, starting up / shutting down, too many
# connections. Class 08 (connection exception) is matched by its prefix.
_SERVER_GOING_AWAY = {"57P01", "57P02", "57P03"}
_SERVER_FULL = {"53300"}
# Deadlock detected, serialization failure: the transaction was rolled back and may be retried.
_RETRYABLE = {"40P01", "40001"}
_QUERY_CANCELED = "57014"

# When the connection being handed out in this task must be there: waiting for a free one
# and opening a new one share DB_POOL_TIMEOUT, rather than each having it in turn.
_checkout_deadline: ContextVar[float | None] = ContextVar("checkout_deadline", default=None)


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


@asynccontextmanager
async def transaction(connection: AsyncConnection) -> AsyncIterator[None]:
    """Run the statements inside as one transaction, on a request's connection.

    A request's connection is in autocommit mode (`runtime.get_connection`), so this switches
    it to the database's default isolation for the duration and back after it. Behind a
    transaction pooler the whole request is one transaction already, and this adds nothing.

    On SQLite the transaction begins with its first write (the driver's implicit BEGIN), so
    callers write first: a read before it would not be part of the transaction.
    """
    options = (
        connection.sync_connection.get_execution_options() if connection.sync_connection else {}
    )
    if options.get("isolation_level") != "AUTOCOMMIT":
        yield
        return
    await connection.commit()  # ends SQLAlchemy's bookkeeping of the autocommitted statements
    await connection.execution_options(isolation_level=connection.dialect.default_isolation_level)
    try:
        async with connection.begin():
            yield
    finally:
        await connection.execution_options(isolation_level="AUTOCOMMIT")


_T = TypeVar("_T")
TRANSACTION_ATTEMPTS = 3


async def in_transaction(connection: AsyncConnection, work: Callable[[], Awaitable[_T]]) -> _T:
    """`work()` in one transaction, run again (up to three times in all) if PostgreSQL broke a
    deadlock by rolling it back: writes that lock rows in different orders (a tag rename and
    a change of the same task's tags) can wait on each other, and the loser's request should
    not fail for it. Behind a transaction pooler the request's own transaction is lost with
    it, so there the request answers 503 at once."""
    for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
        try:
            async with transaction(connection):
                return await work()
        except ConcurrentChange:
            if attempt == TRANSACTION_ATTEMPTS or not _autocommit(connection):
                raise
    raise AssertionError("unreachable")


def pooled_connection(
    engine: AsyncEngine, autocommit: AsyncEngine, *, one_transaction_per_statement: bool
) -> AbstractAsyncContextManager[AsyncConnection]:
    """A connection of the pool under the one policy every caller follows: autocommit (every
    statement its own transaction, one round trip each), or, behind a transaction pooler
    (`DB_STATEMENT_CACHE=false`), one transaction around all of it, the only way the driver's
    prepare and execute reach the same server connection (`runtime.get_connection`)."""
    return autocommit.connect() if one_transaction_per_statement else engine.begin()


def _autocommit(connection: AsyncConnection) -> bool:
    sync = connection.sync_connection
    return sync is not None and sync.get_execution_options().get("isolation_level") == "AUTOCOMMIT"


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
    connect_args: dict[str, Any] = {
        # asyncpg waits 60 s by default for a server that accepts but does not answer.
        "timeout": settings.db_pool_timeout,
    }
    if not settings.db_statement_cache:
        # PgBouncer / Neon pooler in transaction mode: no named statements may outlive a query.
        url = url.update_query_dict({"prepared_statement_cache_size": "0"})
        connect_args |= {
            "statement_cache_size": 0,
            # Unnamed statements: a named one would stay allocated on whichever server
            # connection the pooler picked, piling up there until it recycles the connection.
            "prepared_statement_name_func": lambda: "",
        }
        if settings.db_statement_timeout > 0:
            connect_args["command_timeout"] = settings.db_statement_timeout
    engine = create_async_engine(
        url,
        poolclass=DeadlinePool,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        connect_args=connect_args,
        # Bound values never appear in an error's text: they are passwords' hashes, emails and
        # tasks' text (observability.redacted_traceback withholds the driver's own message).
        hide_parameters=True,
    )
    _connect_by_the_deadline(engine)
    if settings.db_statement_cache and settings.db_statement_timeout > 0:
        _set_statement_timeout(engine, settings.db_statement_timeout)
    _ping_idle_connections(engine)
    _translate_unavailability(engine)
    return engine


def _set_statement_timeout(engine: AsyncEngine, seconds: float) -> None:
    """Bound every statement to `DB_STATEMENT_TIMEOUT` with PostgreSQL's own `statement_timeout`,
    set once per new connection: the server cancels the statement, even if this process died
    meanwhile, and the connection stays usable.

    Not as a start-up parameter, which would save that round trip: PgBouncer refuses the
    connection for any start-up parameter it does not track, in every pool mode. Behind a
    transaction pooler (`DB_STATEMENT_CACHE=false`) a session setting would land on whichever
    server connection the pooler picked, so there asyncpg times each statement itself and
    sends PostgreSQL a cancel request (`command_timeout`, set in `create_engine`).
    """
    statement = f"SET statement_timeout = {max(1, round(seconds * 1000))}"

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.run_async(lambda connection: connection.execute(statement))


class DeadlinePool(AsyncAdaptedQueuePool):
    """The pool, with one deadline per checkout: a request has a connection, or a 503, within
    `pool_timeout` in all.

    Without it, a request that waited the whole timeout for a free connection could then
    start opening a new one (a connect that failed freed its slot) and wait as long again,
    and so could one whose pooled connection turned out dead on checkout.
    """

    def __init__(self, creator: Any, *, timeout: float = 30.0, **kw: Any) -> None:
        super().__init__(creator, timeout=timeout, **kw)
        self.checkout_timeout = timeout

    def connect(self) -> PoolProxiedConnection:
        token = _checkout_deadline.set(time.monotonic() + self.checkout_timeout)
        try:
            return super().connect()
        finally:
            _checkout_deadline.reset(token)


def _connect_by_the_deadline(engine: AsyncEngine) -> None:
    """Give a new connection only the time left before its checkout's deadline."""

    @event.listens_for(engine.sync_engine, "do_connect")
    def _shorten_timeout(
        _dialect: Dialect, _record: ConnectionPoolEntry, _cargs: Any, cparams: dict[str, Any]
    ) -> None:
        deadline = _checkout_deadline.get()
        if deadline is not None:
            # Past the deadline asyncpg gives up at once: a TimeoutError, so a 503.
            cparams["timeout"] = deadline - time.monotonic()


def _ping_idle_connections(engine: AsyncEngine) -> None:
    """Check a pooled connection before use: no round trip if it is in steady use, a ping if
    it sat idle for a while.

    The driver already knows when the server closed a connection (a restart, an admin
    shutdown): such a connection is replaced at once instead of failing a request. A
    connection in steady use has just proven itself, and pinging it on every checkout would
    double the round trips of a one-statement request. An idle one may have been cut silently
    by a proxy or a failover; a failed ping makes the pool replace it.
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def _remember_idle_since(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        if dbapi_connection.driver_connection.is_closed():
            raise DisconnectionError()
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # whatever the driver raises, the connection is unusable
            raise DisconnectionError() from exc


def _translate_unavailability(engine: AsyncEngine) -> None:
    """Turn driver errors that mean "the database cannot answer now" into 503 errors.

    A statement cancelled by the statement timeout (by the server, or by asyncpg behind a
    pooler) is `DatabaseTimedOut`. A server that shut down, crashed, is starting up or is
    full is `DatabaseUnavailable`, and so is a connection lost mid-statement; those
    connections are discarded, and with them every older one in the pool (they died with the
    same server), so requests succeed again as soon as the server is back. Anything else is
    left alone: it is a bug, and the last-resort handler answers 500.
    """

    @event.listens_for(engine.sync_engine, "handle_error")
    def _classify(context: ExceptionContext) -> Exception | None:
        error = context.original_exception
        if not isinstance(error, Exception):
            return None  # a cancelled task (client gone, shutdown): it must stay cancelled
        sqlstate = getattr(error, "sqlstate", None) or ""
        if isinstance(error, TimeoutError) or sqlstate == _QUERY_CANCELED:
            return DatabaseTimedOut()
        if sqlstate in _RETRYABLE:
            return ConcurrentChange()
        if sqlstate in _SERVER_GOING_AWAY or sqlstate.startswith("08"):
            context.is_disconnect = True
        if context.is_disconnect or sqlstate in _SERVER_FULL:
            return DatabaseUnavailable()
        return None


def _create_sqlite_engine(url: URL) -> AsyncEngine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30}, hide_parameters=True)

    @event.listens_for(engine.sync_engine, "connect")
    def _configure(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine
