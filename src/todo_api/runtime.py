"""What one app instance holds (settings, pool, verifier), and the dependencies that hand it out."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

import httpx
from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from todo_api.auth.jwks import JwksClient
from todo_api.auth.provisioning import UserProvisioner
from todo_api.auth.throttle import LoginThrottle
from todo_api.auth.tokens import TokenVerifier
from todo_api.config import Settings
from todo_api.db import create_engine, pooled_connection
from todo_api.errors import DatabaseBusy
from todo_api.shared_state.rate_limits import RateLimiter
from todo_api.shared_state.redis import connect
from todo_api.sync.events import EventHub
from todo_api.sync.housekeeping import Housekeeping
from todo_api.sync.reminders import ReminderWorker

JWKS_FETCH_TIMEOUT_SECONDS = 5.0


class ConnectionTurns:
    """Hands out the pool's connections in the order requests asked for them.

    SQLAlchemy's async pool lets a request that has just arrived take a returned connection
    ahead of those already waiting, so under sustained overload a few requests waited past
    `DB_POOL_TIMEOUT` (503) while the rest were served in a tenth of a second (`make bench`,
    100 connections). asyncio's semaphore is first come, first served.
    """

    def __init__(self, connections: int, timeout_seconds: float) -> None:
        self._free = asyncio.Semaphore(connections)
        self._timeout_seconds = timeout_seconds

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._timeout_seconds):
                await self._free.acquire()
        except TimeoutError:
            raise DatabaseBusy() from None
        try:
            yield
        finally:
            self._free.release()


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    # The same pool, with every statement its own transaction: one round trip per statement.
    autocommit: AsyncEngine
    http: httpx.AsyncClient
    jwks: JwksClient | None
    verifier: TokenVerifier
    users: UserProvisioner
    login_throttle: LoginThrottle
    turns: ConnectionTurns
    # `PUBLIC_BASE_URL` without its trailing slash, for absolute links; None: relative links.
    public_base_url: str | None
    # This process's open event streams, and the LISTEN/NOTIFY relay to the others.
    events: EventHub
    # Claims due reminders every `REMINDER_POLL_SECONDS` and announces them (sync/reminders.py).
    reminders: ReminderWorker
    # Purges tombstones past `SYNC_RETENTION_DAYS`, hourly (sync/housekeeping.py).
    housekeeping: Housekeeping
    # Where the instances' shared state lives when `REDIS_URL` is set; None: the database.
    redis: "Redis | None"
    # Per-user limits of `RATE_LIMIT_PER_MINUTE` (shared_state/rate_limits.py); None: off.
    rate_limiter: RateLimiter | None

    @classmethod
    def from_settings(cls, settings: Settings) -> "Runtime":
        engine = create_engine(settings)
        http = httpx.AsyncClient(timeout=JWKS_FETCH_TIMEOUT_SECONDS, follow_redirects=False)
        events = EventHub.from_settings(settings)
        turns = ConnectionTurns(
            settings.db_pool_size + settings.db_max_overflow, settings.db_pool_timeout
        )
        autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        jwks = None
        if settings.jwks_url is not None:
            jwks = JwksClient(
                settings.jwks_url,
                http,
                max_age_seconds=settings.jwt_jwks_cache_seconds,
                cooldown_seconds=settings.jwt_jwks_cooldown_seconds,
            )
        redis = connect(settings.redis_url) if settings.redis_url else None
        return cls(
            settings=settings,
            redis=redis,
            engine=engine,
            autocommit=autocommit,
            http=http,
            jwks=jwks,
            verifier=TokenVerifier(settings, jwks),
            users=UserProvisioner(engine),
            login_throttle=LoginThrottle.from_settings(settings, redis),
            turns=turns,
            rate_limiter=RateLimiter.from_settings(
                settings, redis=redis, engine=engine, autocommit=autocommit
            ),
            public_base_url=(
                str(settings.public_base_url).rstrip("/") if settings.public_base_url else None
            ),
            events=events,
            housekeeping=Housekeeping(engine, retention_days=settings.sync_retention_days),
            reminders=ReminderWorker(
                engine=engine,
                autocommit=autocommit,
                turns=turns,
                poll_seconds=settings.reminder_poll_seconds,
                deliver=events.reminder,
                one_transaction_per_statement=settings.db_statement_cache,
            ),
        )

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection, lent in turn (`ConnectionTurns`): autocommit, or one
        transaction behind a transaction pooler (`get_connection` says why). A request's
        connection, and those of the work around requests (streams, idempotency keys)."""
        pooled = pooled_connection(
            self.engine,
            self.autocommit,
            one_transaction_per_statement=self.settings.db_statement_cache,
        )
        async with self.turns.turn(), pooled as connection:
            yield connection

    async def close(self) -> None:
        await self.reminders.close()  # first: it delivers to the hub, through the pool
        await self.housekeeping.close()
        await self.events.close()
        await self.http.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_runtime(request: Request) -> Runtime:
    # async, so FastAPI calls it inline rather than in a worker thread
    return runtime_of(request)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    """A pooled connection in autocommit mode, returned to the pool before the response is sent.

    Every statement is its own transaction, committed when it returns, so a 2xx means the
    write is durable, and a request costs one round trip instead of BEGIN, statement, COMMIT.
    Each route writes with at most one statement; one that must write several things together
    opens `async with connection.begin():` around them.

    Behind a transaction pooler (PgBouncer, Neon's pooler: `DB_STATEMENT_CACHE=false`) the
    driver's prepare and execute must reach the same server connection, which only a
    transaction guarantees, so there each request is one transaction instead.
    """
    async with runtime_of(request).connection() as connection:
        yield connection


DatabaseDep = Annotated[AsyncConnection, Depends(get_connection, scope="function")]
