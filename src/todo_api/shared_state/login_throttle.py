"""Where failed logins are counted, so that every instance sees the same counts (SPEC §13):
PostgreSQL by default (SQLite for one process), Redis when `REDIS_URL` is set. The policy, which
counters a login touches and what their limits mean, is `auth/throttle.py`'s; a store keeps
timestamps and answers, in one round trip, how full each counter of a login attempt is (a
failure then costs one more to record it).

Times are Unix seconds from the wall clock: instances must agree on them. A login is rare, so
nothing is cached: every check asks the store.

- Database: one row per failure and counter in `login_failures` (index `(counter, failed_at)`),
  and one row per account and client that logged in in `login_known_clients`. The check is one
  statement (a scalar subquery per counter, and one for the known client). Recording a failure
  also deletes up to `SWEEP_ROWS` of the oldest rows, if they have left the window: whatever
  counters they belong to, the table stays near what the window holds, even when every attempt
  names a new email. A success forgets that account's clients not seen for 30 days.
- Redis: a sorted set per counter (member unique, score the time), which expires a window after
  its last failure, and a key per known client, which expires after 30 days. Each call is one
  pipeline. A Redis that does not answer within `REDIS_TIMEOUT_SECONDS` makes the login a 503:
  no login is let through uncounted.
"""

import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from todo_api.shared_state.models import login_failures_table, login_known_clients_table
from todo_api.shared_state.redis import answering

# At most this many rows that have left the window go with each recorded failure (which writes
# three): the oldest by id, found through the primary key; a few milliseconds on PostgreSQL.
SWEEP_ROWS = 500
# Every key this module writes in Redis starts with it.
REDIS_PREFIX = "todo-api:login:"
STORE_UNAVAILABLE = "The login throttle's store is unavailable; try again shortly."

_failures = login_failures_table.c
_known = login_known_clients_table.c


@dataclass(frozen=True, slots=True)
class Tally:
    """How full the counters of one login attempt are."""

    # Per counter asked about: when its limit-th newest failure in the window happened (the one
    # that leaves the window first while the counter is full); None while it holds fewer.
    full_since: dict[str, float | None]
    # When this client last logged in to this account; None if it never did (or was forgotten).
    known_since: float | None


class LoginFailureStore(Protocol):
    """Failure timestamps per counter, and the clients known to each account.

    `connection` is the request's own database connection (no second one is taken from the
    pool); a store that does not keep its state in the database ignores it."""

    async def tally(
        self,
        connection: AsyncConnection,
        limits: Mapping[str, int],
        email: str,
        client: str,
        horizon: float,
    ) -> Tally:
        """`limits` maps each counter to its limit; failures at or before `horizon` do not
        count."""
        ...

    async def add_failure(
        self, connection: AsyncConnection, counters: Sequence[str], now: float, window: float
    ) -> None: ...

    async def remember_client(
        self,
        connection: AsyncConnection,
        cleared_counter: str,
        email: str,
        client: str,
        now: float,
        remember_seconds: int,
    ) -> None:
        """Forget `cleared_counter`'s failures, and remember `client` as one that logged in to
        `email` at `now`, for `remember_seconds`."""
        ...


class DatabaseLoginStore:
    """`login_failures` and `login_known_clients`, on the caller's connection.

    Each write is committed before the call returns: behind a transaction pooler the request's
    connection is one transaction, which the 401 that follows a failure would roll back."""

    async def tally(
        self,
        connection: AsyncConnection,
        limits: Mapping[str, int],
        email: str,
        client: str,
        horizon: float,
    ) -> Tally:
        counters = list(limits)
        columns = [
            select(_failures.failed_at)
            .where(_failures.counter == counter, _failures.failed_at > horizon)
            .order_by(_failures.failed_at.desc())
            .limit(1)
            .offset(limits[counter] - 1)
            .scalar_subquery()
            .label(f"counter_{index}")
            for index, counter in enumerate(counters)
        ]
        known_since = (
            select(_known.since)
            .where(_known.email == email, _known.client == client)
            .scalar_subquery()
            .label("known_since")
        )
        row = (await connection.execute(select(*columns, known_since))).one()
        return Tally(
            full_since={counter: row[index] for index, counter in enumerate(counters)},
            known_since=row.known_since,
        )

    async def add_failure(
        self, connection: AsyncConnection, counters: Sequence[str], now: float, window: float
    ) -> None:
        await connection.execute(
            login_failures_table.insert().values(
                [{"counter": counter, "failed_at": now} for counter in counters]
            )
        )
        oldest = select(_failures.id).order_by(_failures.id).limit(SWEEP_ROWS)
        await connection.execute(
            delete(login_failures_table).where(
                _failures.id.in_(oldest), _failures.failed_at <= now - window
            )
        )
        await connection.commit()

    async def remember_client(
        self,
        connection: AsyncConnection,
        cleared_counter: str,
        email: str,
        client: str,
        now: float,
        remember_seconds: int,
    ) -> None:
        await connection.execute(
            delete(login_failures_table).where(_failures.counter == cleared_counter)
        )
        await connection.execute(
            delete(login_known_clients_table).where(
                _known.email == email, _known.since <= now - remember_seconds
            )
        )
        insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
        upsert = insert(login_known_clients_table).values(email=email, client=client, since=now)
        await connection.execute(
            upsert.on_conflict_do_update(
                index_elements=[_known.email, _known.client],
                set_={"since": upsert.excluded.since},
            )
        )
        await connection.commit()


class RedisLoginStore:
    """A sorted set per counter and a key per known client, under `prefix`."""

    def __init__(self, redis: Redis, prefix: str = REDIS_PREFIX) -> None:
        self.redis = redis
        self.prefix = prefix

    def counter_key(self, counter: str) -> str:
        return self.prefix + counter

    def known_key(self, email: str, client: str) -> str:
        return f"{self.prefix}known:{client}:{email}"

    async def tally(
        self,
        connection: AsyncConnection,
        limits: Mapping[str, int],
        email: str,
        client: str,
        horizon: float,
    ) -> Tally:
        async with (
            answering(STORE_UNAVAILABLE),
            self.redis.pipeline(transaction=False) as pipe,
        ):
            for counter, limit in limits.items():
                key = self.counter_key(counter)
                pipe.zremrangebyscore(key, "-inf", horizon)
                pipe.zrevrange(key, limit - 1, limit - 1, withscores=True)
            pipe.get(self.known_key(email, client))
            replies = await pipe.execute()
        full_since: dict[str, float | None] = {}
        for index, counter in enumerate(limits):
            limit_th = replies[2 * index + 1]
            full_since[counter] = float(limit_th[0][1]) if limit_th else None
        known = replies[-1]
        return Tally(full_since, None if known is None else float(known))

    async def add_failure(
        self, connection: AsyncConnection, counters: Sequence[str], now: float, window: float
    ) -> None:
        member = f"{now!r}:{secrets.token_hex(6)}"
        async with answering(STORE_UNAVAILABLE), self.redis.pipeline() as pipe:
            for counter in counters:
                key = self.counter_key(counter)
                pipe.zadd(key, {member: now})
                pipe.zremrangebyscore(key, "-inf", now - window)
                pipe.expire(key, math.ceil(window) + 1)
            await pipe.execute()

    async def remember_client(
        self,
        connection: AsyncConnection,
        cleared_counter: str,
        email: str,
        client: str,
        now: float,
        remember_seconds: int,
    ) -> None:
        async with answering(STORE_UNAVAILABLE), self.redis.pipeline() as pipe:
            pipe.delete(self.counter_key(cleared_counter))
            pipe.set(self.known_key(email, client), repr(now), ex=remember_seconds)
            await pipe.execute()
