"""Per-user rate limits (SPEC §13): `RATE_LIMIT_PER_MINUTE` requests per user per minute on
`/api/…` and `/mcp`, counted across every worker of every instance, without a round trip to
the shared store per request.

The minute is a fixed window aligned to the wall clock (12:00:00-12:00:59, …), so every
process agrees on which window a request falls in. The window's budget lives in the shared
store: a row of `rate_limit_windows` (PostgreSQL, or SQLite for one process), or a Redis hash
with the same fields when `REDIS_URL` is set. Each process *leases* a share of it and admits
requests against its lease in memory; only when the lease is spent does it go back to the
store, with one statement that resets the row on a new window, takes the next lease and says
what is left. A lease is at most a quarter of what the store still has (at least 1, at most
`MAX_LEASE`), so the shares shrink as the budget runs low: the store never hands out more
than the limit, whichever instances ask, and a process refuses a request only when its lease
is spent and the store said nothing was left, which stays true until the window ends.

The cost on the hot path is a dictionary look-up and a subtraction; the store is asked about
once per `MAX_LEASE` requests of a busy user, and not at all while a refused user keeps asking.
"""

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from todo_api.config import Settings
from todo_api.db import pooled_connection
from todo_api.errors import RateLimited, error_body
from todo_api.openapi import RESPONSE_HEADERS
from todo_api.shared_state.redis import answering

WINDOW_SECONDS = 60
# The largest lease: the store is asked at least once per this many requests of one user in
# one process, and at most this much of a budget can sit unused in a process that stops
# getting that user's requests.
MAX_LEASE = 100
# Users remembered per process; when more are active within one window, the oldest entries
# go first (their unspent lease is lost, which can only refuse sooner, never admit more).
MAX_TRACKED_USERS = 100_000
# The policy's name in `RateLimit-Policy` and `RateLimit` (an sf-string, as the draft has it).
POLICY = "default"
REDIS_KEY_PREFIX = "todo-api:rate-limit:"
STORE_UNAVAILABLE = "The rate-limit store is unavailable; try again shortly."

RateLimitHeaders = list[tuple[bytes, bytes]]


def lease_size(left: int, max_lease: int = MAX_LEASE) -> int:
    """How much of what the store has `left` one lease takes: a quarter, at least 1 (while
    anything is left), at most `max_lease`. The stores compute the same in their statement."""
    return min(left, max(1, min(max_lease, left // 4)))


@dataclass(frozen=True, slots=True)
class Lease:
    """What the store handed out (`granted`, possibly 0) and what it still has (`left`)."""

    granted: int
    left: int


class LeaseStore(Protocol):
    """Where the instances' shared budget lives: one user's next lease in one round trip."""

    async def lease(self, user_id: str, window_start: int) -> Lease: ...


class DatabaseLeases:
    """The budget in `rate_limit_windows`: one row per user, reset when a later window asks.

    One statement per lease: an upsert whose SET expressions all see the row as it was, so
    the grant is computed once from the old `used` and returned with the new one; the row
    lock orders concurrent leases of one user, from any instance. A request that still
    believes in an earlier window (a clock slightly behind) takes its lease from the row's
    window rather than rewinding it.
    """

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        autocommit: AsyncEngine,
        limit: int,
        max_lease: int = MAX_LEASE,
        one_transaction_per_statement: bool = True,
    ) -> None:
        self._engine = engine
        self._autocommit = autocommit
        self._limit = limit
        self._max_lease = max_lease
        self._one_transaction_per_statement = one_transaction_per_statement
        self._statement = text(_lease_sql(engine.dialect.name))

    async def lease(self, user_id: str, window_start: int) -> Lease:
        first = lease_size(self._limit, self._max_lease)
        parameters = {
            "user_id": user_id,
            "window_start": window_start,
            "first": first,
            "limit": self._limit,
            "max_lease": self._max_lease,
        }
        async with self._connection() as connection:
            row = (await connection.execute(self._statement, parameters)).one()
        return Lease(granted=row.last_grant, left=max(self._limit - row.used, 0))

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection]:
        # Straight from the pool, not in `ConnectionTurns`: a lease is rare (one per
        # `MAX_LEASE` requests) and runs before the request takes its own turn, and waiting
        # for a turn and then for the pool would let a request wait twice `DB_POOL_TIMEOUT`
        # when the database stops answering.
        pooled = pooled_connection(
            self._engine,
            self._autocommit,
            one_transaction_per_statement=self._one_transaction_per_statement,
        )
        async with pooled as connection:
            yield connection


def _lease_sql(dialect: str) -> str:
    """The lease upsert; SQLite spells LEAST and GREATEST as the scalar MIN and MAX."""
    least, greatest = ("LEAST", "GREATEST") if dialect == "postgresql" else ("MIN", "MAX")
    # What the row's window has used so far: nothing if the row is of an earlier window.
    used = "CASE WHEN w.window_start >= excluded.window_start THEN w.used ELSE 0 END"
    left = f"{greatest}(:limit - {used}, 0)"
    grant = f"{least}({left}, {greatest}(1, {least}(:max_lease, {left} / 4)))"
    # Only these fixed spellings are formatted in; every value is a bound parameter.
    return f"""
        INSERT INTO rate_limit_windows AS w (user_id, window_start, used, last_grant)
        VALUES (:user_id, :window_start, :first, :first)
        ON CONFLICT (user_id) DO UPDATE SET
            window_start = {greatest}(w.window_start, excluded.window_start),
            used = {used} + {grant},
            last_grant = {grant}
        RETURNING used, last_grant
    """  # noqa: S608


# The same upsert on a hash of the same fields; it expires a window after its own ends, so a
# user who stops asking leaves nothing behind.
_REDIS_LEASE = """
local window_start = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local max_lease = tonumber(ARGV[3])
local stored = redis.call('HMGET', KEYS[1], 'window_start', 'used')
local used = 0
if stored[1] and tonumber(stored[1]) >= window_start then
  window_start = tonumber(stored[1])
  used = tonumber(stored[2])
end
local left = math.max(limit - used, 0)
local grant = math.min(left, math.max(1, math.min(max_lease, math.floor(left / 4))))
used = used + grant
redis.call('HSET', KEYS[1], 'window_start', window_start, 'used', used, 'last_grant', grant)
redis.call('EXPIREAT', KEYS[1], window_start + 2 * tonumber(ARGV[4]))
return {grant, math.max(limit - used, 0)}
"""


class RedisLeases:
    """The budget in Redis: a hash per user (`todo-api:rate-limit:<user id>`) with the
    table's fields, leased by one Lua script (atomic: Redis runs one script at a time)."""

    def __init__(
        self,
        redis: "Redis",
        *,
        limit: int,
        max_lease: int = MAX_LEASE,
        key_prefix: str = REDIS_KEY_PREFIX,
    ) -> None:
        self._script = redis.register_script(_REDIS_LEASE)
        self._limit = limit
        self._max_lease = max_lease
        self._key_prefix = key_prefix

    def key(self, user_id: str) -> str:
        return self._key_prefix + user_id

    async def lease(self, user_id: str, window_start: int) -> Lease:
        arguments = [window_start, self._limit, self._max_lease, WINDOW_SECONDS]
        async with answering(STORE_UNAVAILABLE):
            granted, left = await self._script(keys=[self.key(user_id)], args=arguments)
        return Lease(granted=int(granted), left=int(left))


@dataclass(slots=True)
class _Leasing:
    """A lease being taken: the user's other requests in this process wait for it."""

    done: asyncio.Event = field(default_factory=asyncio.Event)
    failure: Exception | None = None


@dataclass(slots=True)
class _Budget:
    """One user's budget in this process for one window: what is left of the local lease,
    and what the store said it still had when that lease was taken."""

    window_start: int
    local: int = 0
    shared: int = -1  # unknown until the first lease
    leasing: _Leasing | None = None

    @property
    def exhausted(self) -> bool:
        # The store's remainder only shrinks within a window: once it said 0, it stays 0.
        return self.local == 0 and self.shared == 0


class RateLimiter:
    """Admits a user's request or refuses it with `RateLimited` (429); see the module docs.

    `clock` is the wall clock in Unix seconds (every instance must agree on the window), an
    attribute so that a test can move it to the next window instead of waiting a minute.
    """

    def __init__(
        self,
        limit: int,
        store: LeaseStore,
        *,
        clock: Callable[[], float] = time.time,
        max_tracked_users: int = MAX_TRACKED_USERS,
    ) -> None:
        self.limit = limit
        self.store = store
        self.clock = clock
        self._max_tracked_users = max_tracked_users
        self._budgets: dict[str, _Budget] = {}
        self._window_start = 0
        self._policy = f'"{POLICY}";q={limit};w={WINDOW_SECONDS}'
        self._policy_header = (b"ratelimit-policy", self._policy.encode())

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        redis: "Redis | None",
        engine: AsyncEngine,
        autocommit: AsyncEngine,
    ) -> "RateLimiter | None":
        """The limiter `RATE_LIMIT_PER_MINUTE` asks for, on Redis when there is one, else on
        the database; None when the limit is 0 (off: no headers, no store)."""
        limit = settings.rate_limit_per_minute
        if limit == 0:
            return None
        store: LeaseStore
        if redis is not None:
            store = RedisLeases(redis, limit=limit)
        else:
            store = DatabaseLeases(
                engine=engine,
                autocommit=autocommit,
                limit=limit,
                one_transaction_per_statement=settings.db_statement_cache,
            )
        return cls(limit, store)

    @property
    def tracked_users(self) -> int:
        """Users this process holds a budget for (bounded; for tests and curiosity)."""
        return len(self._budgets)

    async def admit(self, user_id: str) -> RateLimitHeaders:
        """Count one request of this user, and return the `RateLimit-Policy` and `RateLimit`
        headers its answer carries; raises `RateLimited` past the limit."""
        while True:
            now = self.clock()
            budget = self._budget(user_id, int(now // WINDOW_SECONDS) * WINDOW_SECONDS)
            if budget.local > 0:
                budget.local -= 1
                remaining = budget.local + budget.shared
                return [
                    self._policy_header,
                    (b"ratelimit", self._state(remaining, budget, now).encode()),
                ]
            if budget.exhausted:
                raise self._refusal(budget, now)
            leasing = budget.leasing
            if leasing is None:
                await self._lease(user_id, budget)
            else:
                await leasing.done.wait()
                if leasing.failure is not None:
                    raise leasing.failure

    def _budget(self, user_id: str, window_start: int) -> _Budget:
        if window_start > self._window_start:
            # A new window: every budget held is of an earlier one.
            self._window_start = window_start
            self._budgets = {}
        budget = self._budgets.get(user_id)
        if budget is None or budget.window_start < window_start:
            budget = self._budgets[user_id] = _Budget(window_start)
            if len(self._budgets) > self._max_tracked_users:
                del self._budgets[next(iter(self._budgets))]
        return budget

    async def _lease(self, user_id: str, budget: _Budget) -> None:
        """Take the next lease; the user's other requests wait for it rather than each taking
        one (a burst of one user would otherwise empty the store in a single round)."""
        leasing = budget.leasing = _Leasing()
        try:
            lease = await self.store.lease(user_id, budget.window_start)
        except Exception as exc:
            leasing.failure = exc  # the waiters fail with it rather than each retrying
            raise
        else:
            budget.local += lease.granted
            budget.shared = lease.left
        finally:
            budget.leasing = None
            leasing.done.set()

    def _refusal(self, budget: _Budget, now: float) -> RateLimited:
        retry_after = _seconds_left(budget, now)
        return RateLimited(
            retry_after,
            {"RateLimit-Policy": self._policy, "RateLimit": self._state(0, budget, now)},
        )

    def _state(self, remaining: int, budget: _Budget, now: float) -> str:
        return f'"{POLICY}";r={remaining};t={_seconds_left(budget, now)}'


def _seconds_left(budget: _Budget, now: float) -> int:
    """Whole seconds until the budget's window ends (at least 1)."""
    return max(1, math.ceil(budget.window_start + WINDOW_SECONDS - now))


# The OpenAPI document: every operation that takes the bearer token is limited.

RATE_LIMIT_HEADERS = {name: RESPONSE_HEADERS[name] for name in ("RateLimit-Policy", "RateLimit")}
ERROR_HEADERS = ("X-Request-ID", "Retry-After")
_RATE_LIMITED_RESPONSE: dict[str, Any] = {
    "description": "Past `RATE_LIMIT_PER_MINUTE` requests this minute; retry after "
    "`Retry-After` seconds",
    "content": {
        "application/json": {
            "schema": {"$ref": "#/components/schemas/ErrorResponse"},
            "example": error_body(RateLimited.detail),
        }
    },
}


def document_rate_limits(document: dict[str, Any], bearer_scheme: str) -> dict[str, Any]:
    """Add the 429 and the `RateLimit` headers to every operation that takes the bearer
    token; an operation that documents a 429 of its own gets both reasons in one. Applying it
    twice changes nothing more."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if not any(bearer_scheme in entry for entry in operation.get("security", ())):
                continue
            responses = operation.setdefault("responses", {})
            for status, response in responses.items():
                if status.startswith(("2", "3")):
                    response.setdefault("headers", {}).update(RATE_LIMIT_HEADERS)
            limited = responses.get("429")
            if limited is not None and "RateLimit" in limited.get("headers", {}):
                continue  # documented already
            if limited is None:
                limited = {
                    **_RATE_LIMITED_RESPONSE,
                    "headers": {name: RESPONSE_HEADERS[name] for name in ERROR_HEADERS},
                }
            else:
                description = _RATE_LIMITED_RESPONSE["description"]
                limited = {**limited, "description": f"{limited['description']}; or: {description}"}
            limited["headers"] = {**limited["headers"], **RATE_LIMIT_HEADERS}
            operation["responses"] = dict(sorted({**responses, "429": limited}.items()))
    return document
