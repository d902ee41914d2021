"""Login throttling in the store every instance shares (SPEC §13): the database's tables
(SQLite, PostgreSQL) or Redis (`REDIS_URL`). Each test runs against each store, through the app,
and checks what the store holds afterwards; the sliding window is checked against each store
with a clock of the test's own. Real servers: tests/test_login_throttle_processes.py."""

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from redis.asyncio import Redis
from sqlalchemy import insert

from tests.conftest import DatabaseProbe, redis_test_url, running
from todo_api.auth.throttle import KNOWN_CLIENT_SECONDS, LoginThrottle
from todo_api.config import Settings
from todo_api.errors import TooManyAttempts
from todo_api.shared_state.login_throttle import (
    REDIS_PREFIX,
    STORE_UNAVAILABLE,
    SWEEP_ROWS,
    DatabaseLoginStore,
    RedisLoginStore,
)
from todo_api.shared_state.models import login_failures_table, login_known_clients_table

PASSWORD = "correct horse battery"
WRONG = "wrong password"
PER_PAIR, PER_CLIENT, PER_EMAIL = 3, 5, 6
WINDOW = 900


@dataclass
class RedisKeys:
    redis: Redis
    prefix: str

    async def names(self) -> list[str]:
        return sorted([key.decode() async for key in self.redis.scan_iter(f"{self.prefix}*")])

    async def delete_all(self) -> None:
        names = await self.names()
        if names:
            await self.redis.delete(*names)


@asynccontextmanager
async def own_redis_keys() -> AsyncIterator[RedisKeys]:
    """A Redis client and a key prefix of the caller's own; every key under it is deleted
    after."""
    client = Redis.from_url(redis_test_url())
    keys = RedisKeys(client, f"test:{uuid.uuid4().hex}:")
    try:
        yield keys
    finally:
        await keys.delete_all()
        await client.aclose()


STORES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "redis"]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> str:
    param: str = request.param
    return param


@pytest.fixture
def database_url(store: str, request: pytest.FixtureRequest) -> str:
    """The Redis store runs beside SQLite (the database plays no part in its counts)."""
    url: str = request.getfixturevalue("postgres_url" if store == "postgresql" else "sqlite_url")
    return url


@pytest.fixture
def settings(settings: Settings, store: str) -> Settings:
    update: dict[str, Any] = {
        "accounts_enabled": True,
        "login_max_failures": PER_PAIR,
        "login_max_failures_per_client": PER_CLIENT,
        "login_max_failures_per_email": PER_EMAIL,
        "login_failure_window_seconds": WINDOW,
    }
    if store == "redis":
        update["redis_url"] = redis_test_url()
    return settings.model_copy(update=update)


@dataclass
class Held:
    """What a store holds: failures per counter, and the (email, client) pairs it knows."""

    failures: dict[str, int]
    known: set[tuple[str, str]]


class Shared:
    """The app's store, read straight from where it lives."""

    def __init__(self, app: FastAPI, db: DatabaseProbe, keys: "RedisKeys | None") -> None:
        self.throttle: LoginThrottle = app.state.runtime.login_throttle
        self.db = db
        self.keys = keys
        if keys is not None:
            # This test's own prefix, so that tests cannot see each other's counts.
            assert isinstance(self.throttle.store, RedisLoginStore)
            assert self.throttle.store.prefix == REDIS_PREFIX
            self.throttle.store = RedisLoginStore(app.state.runtime.redis, keys.prefix)
        else:
            assert isinstance(self.throttle.store, DatabaseLoginStore)

    async def held(self) -> Held:
        if self.keys is None:
            rows = await self.db.rows(
                "SELECT counter, count(*) AS n FROM login_failures GROUP BY counter"
            )
            known = await self.db.rows("SELECT email, client FROM login_known_clients")
            return Held(
                {row["counter"]: row["n"] for row in rows},
                {(row["email"], row["client"]) for row in known},
            )
        failures: dict[str, int] = {}
        known_pairs: set[tuple[str, str]] = set()
        for name in await self.keys.names():
            key = name.removeprefix(self.keys.prefix)
            if key.startswith("known:"):
                client, email = key.removeprefix("known:").rsplit(":", 1)
                known_pairs.add((email, client))
            else:
                failures[key] = await self.keys.redis.zcard(name)
        return Held(failures, known_pairs)


@pytest.fixture
async def shared(app: FastAPI, db: DatabaseProbe, store: str) -> AsyncIterator[Shared]:
    if store != "redis":
        yield Shared(app, db, None)
        return
    async with own_redis_keys() as keys:
        yield Shared(app, db, keys)


def from_address(app: FastAPI, address: str) -> AsyncClient:
    """A client whose requests come from `address`, as the throttle sees it."""
    transport = ASGITransport(app=app, raise_app_exceptions=False, client=(address, 40000))
    return AsyncClient(transport=transport, base_url="http://testserver")


async def signup(client: AsyncClient, email: str) -> None:
    body = {"name": "Ann Lee", "email": email, "password": PASSWORD}
    response = await client.post("/api/auth/signup", json=body)
    assert response.status_code == 201, response.text


async def login(client: AsyncClient, email: str, password: str = WRONG) -> Response:
    return await client.post("/api/auth/login", json={"email": email, "password": password})


async def statuses(client: AsyncClient, email: str, times: int) -> list[int]:
    return [(await login(client, email)).status_code for _ in range(times)]


def assert_throttled(response: Response, at_most: int = WINDOW) -> None:
    assert response.status_code == 429, response.text
    assert response.json() == {"detail": TooManyAttempts.detail}
    assert 0 < int(response.headers["retry-after"]) <= at_most


async def test_the_configured_count_passes_and_the_next_is_429(
    app: FastAPI, shared: Shared
) -> None:
    owner_email = "owner@example.com"
    async with (
        from_address(app, "198.51.100.7") as stranger,
        from_address(app, "203.0.113.20") as owner,
    ):
        await signup(owner, owner_email)
        assert await statuses(stranger, owner_email, PER_PAIR) == [401] * PER_PAIR
        blocked = await login(stranger, owner_email, PASSWORD)  # even the right password waits
        assert_throttled(blocked)
        # The oldest of the failures leaves the window in about WINDOW seconds.
        assert int(blocked.headers["retry-after"]) >= WINDOW - 5
        # Another email from that client, and that email from another client, go on.
        assert (await login(stranger, "someone@example.com")).status_code == 401
        assert (await login(owner, owner_email, PASSWORD)).status_code == 200

    held = await shared.held()
    assert held.failures == {
        f"pair:198.51.100.7:{owner_email}": PER_PAIR,
        "pair:198.51.100.7:someone@example.com": 1,
        "client:198.51.100.7": PER_PAIR + 1,
        f"email:{owner_email}": PER_PAIR,
        "email:someone@example.com": 1,
    }
    assert held.known == {(owner_email, "203.0.113.20")}


async def test_one_client_trying_many_emails_meets_its_own_limit(
    app: FastAPI, shared: Shared
) -> None:
    async with from_address(app, "192.0.2.44") as sprayer, from_address(app, "192.0.2.45") as other:
        for n in range(PER_CLIENT):
            assert (await login(sprayer, f"user{n}@example.com")).status_code == 401
        assert_throttled(await login(sprayer, "fresh@example.com"))
        assert (await login(other, "fresh@example.com")).status_code == 401
    held = await shared.held()
    assert held.failures["client:192.0.2.44"] == PER_CLIENT
    assert held.failures["client:192.0.2.45"] == 1
    assert "email:fresh@example.com" in held.failures  # only the other client's failure
    assert held.failures["email:fresh@example.com"] == 1


async def test_the_per_email_ceiling_spares_a_client_that_logged_in_before(
    app: FastAPI, shared: Shared
) -> None:
    email = "owner2@example.com"
    async with from_address(app, "203.0.113.20") as owner:
        await signup(owner, email)
        assert (await login(owner, email, PASSWORD)).status_code == 200
        for n in range(PER_EMAIL // PER_PAIR):
            async with from_address(app, f"198.51.100.{n + 1}") as guesser:
                assert await statuses(guesser, email, PER_PAIR) == [401] * PER_PAIR
        async with from_address(app, "198.51.100.99") as newcomer:
            assert_throttled(await login(newcomer, email, PASSWORD))
        # The owner's own client is not held by the ceiling, and may even fail a little.
        assert (await login(owner, email)).status_code == 401
        assert (await login(owner, email, PASSWORD)).status_code == 200
    held = await shared.held()
    assert held.failures[f"email:{email}"] == PER_EMAIL + 1
    assert held.known == {(email, "203.0.113.20")}


async def test_a_success_clears_that_clients_failures_for_the_account(
    app: FastAPI, shared: Shared
) -> None:
    email = "owner3@example.com"
    pair = f"pair:203.0.113.30:{email}"
    async with from_address(app, "203.0.113.30") as owner:
        await signup(owner, email)
        for _ in range(2):
            assert await statuses(owner, email, PER_PAIR - 1) == [401] * (PER_PAIR - 1)
            assert (await shared.held()).failures[pair] == PER_PAIR - 1
            assert (await login(owner, email, PASSWORD)).status_code == 200
            assert pair not in (await shared.held()).failures
    held = await shared.held()
    # The client's and the email's counters keep the failures: a success clears only the pair.
    assert held.failures == {
        "client:203.0.113.30": 2 * (PER_PAIR - 1),
        f"email:{email}": 2 * (PER_PAIR - 1),
    }


async def test_two_apps_on_one_store_count_together(
    app: FastAPI, shared: Shared, settings: Settings
) -> None:
    """Two instances in one process: failures alternate between them and count in total."""
    email = "owner4@example.com"
    async with running(settings) as (other_app, _):
        if shared.keys is not None:
            Shared(other_app, shared.db, shared.keys)
        async with (
            from_address(app, "198.51.100.40") as on_first,
            from_address(other_app, "198.51.100.40") as on_second,
        ):
            await signup(on_first, email)
            answers = [(await login((on_first, on_second)[n % 2], email)) for n in range(PER_PAIR)]
            assert [answer.status_code for answer in answers] == [401] * PER_PAIR
            assert_throttled(await login(on_first, email, PASSWORD))
            assert_throttled(await login(on_second, email, PASSWORD))
    assert (await shared.held()).failures[f"pair:198.51.100.40:{email}"] == PER_PAIR


async def test_the_store_follows_the_settings(settings: Settings, store: str) -> None:
    async with running(settings) as (app, _):
        chosen = app.state.runtime.login_throttle.store
        if store == "redis":
            assert isinstance(chosen, RedisLoginStore)
            assert chosen.redis is app.state.runtime.redis
        else:
            assert isinstance(chosen, DatabaseLoginStore)


# The sliding window, against each store, with the test's own clock.


@dataclass
class Clock:
    now: float

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store_under_test(
    app: FastAPI, shared: Shared
) -> AsyncIterator[Callable[[Clock], Awaitable[Any]]]:
    """A function making a throttle over the app's store (and the connection it needs)."""
    engine = app.state.runtime.engine
    async with engine.connect() as connection:

        async def make(clock: Clock) -> tuple[LoginThrottle, Any]:
            throttle = LoginThrottle(
                shared.throttle.store, PER_PAIR, PER_CLIENT, PER_EMAIL, 100, clock=clock
            )
            return throttle, connection

        yield make


async def test_the_window_slides(
    store_under_test: Callable[[Clock], Awaitable[Any]], shared: Shared
) -> None:
    """Failures at t, t+10, t+20 fill a counter of 3 in a window of 100 s: it frees up when
    the one at t leaves the window, and stays free until the next fills it again."""
    start = 1_900_000_000.0  # a wall-clock time
    clock = Clock(start)
    throttle, connection = await store_under_test(clock)
    email, client = "window@example.com", "192.0.2.70"

    for offset in (0, 10, 20):
        clock.now = start + offset
        assert await throttle.retry_after(connection, email, client) is None
        await throttle.record_failure(connection, email, client)
    clock.now = start + 30
    assert await throttle.retry_after(connection, email, client) == 70
    clock.now = start + 99.5
    assert await throttle.retry_after(connection, email, client) == 1
    clock.now = start + 100  # the failure at `start` is out: two left
    assert await throttle.retry_after(connection, email, client) is None
    await throttle.record_failure(connection, email, client)
    assert await throttle.retry_after(connection, email, client) == 10  # the one at +10 next
    # Another client, and that client with another email, were never held.
    assert await throttle.retry_after(connection, email, "192.0.2.71") is None
    assert await throttle.retry_after(connection, "other@example.com", client) is None
    held = await shared.held()
    # Recording removes a counter's failures that have left the window.
    assert held.failures[f"pair:{client}:{email}"] == 3


async def test_a_known_client_is_forgotten_after_30_days(
    store_under_test: Callable[[Clock], Awaitable[Any]], shared: Shared
) -> None:
    start = 1_900_000_000.0
    clock = Clock(start)
    throttle, connection = await store_under_test(clock)
    email, owner = "known@example.com", "192.0.2.80"
    await throttle.record_success(connection, email, owner)
    clock.now = start + 200  # the success is out of the window; the client is still known
    for n in range(PER_EMAIL):
        await throttle.record_failure(connection, email, f"198.51.100.{n}")
    assert await throttle.retry_after(connection, email, "198.51.100.200") == 100
    assert await throttle.retry_after(connection, email, owner) is None
    clock.now = start + KNOWN_CLIENT_SECONDS  # thirty days on: the owner is held like anyone
    for n in range(PER_EMAIL):
        await throttle.record_failure(connection, email, f"198.51.100.{n + 100}")
    assert await throttle.retry_after(connection, email, owner) == 100
    assert (await shared.held()).known == {(email, owner)}
    # Another client's success forgets the account's clients older than 30 days.
    await throttle.record_success(connection, email, "192.0.2.81")
    if shared.keys is None:
        assert (await shared.held()).known == {(email, "192.0.2.81")}


async def test_a_long_client_address_is_counted_by_its_hash(
    store_under_test: Callable[[Clock], Awaitable[Any]], shared: Shared
) -> None:
    """Only a proxy's odd `X-Forwarded-For` makes one; it must still fit every key."""
    throttle, connection = await store_under_test(Clock(1_900_000_000.0))
    client = "x" * 300
    for _ in range(PER_PAIR):
        await throttle.record_failure(connection, "long@example.com", client)
    assert await throttle.retry_after(connection, "long@example.com", client) == 100
    await throttle.record_success(connection, "long@example.com", client)
    held = await shared.held()
    ((email, known),) = held.known
    assert (email, len(known)) == ("long@example.com", len("sha256:") + 64)
    assert held.failures[f"client:{known}"] == PER_PAIR


# What each store does to stay small.


@pytest.mark.parametrize(
    "store", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
async def test_recording_a_failure_sweeps_rows_that_left_the_window(
    app: FastAPI, shared: Shared, db: DatabaseProbe
) -> None:
    """Rows of counters never touched again (each attempt naming a new email) go too, a
    bounded number per failure, oldest first; known clients older than 30 days as well."""
    throttle = LoginThrottle(DatabaseLoginStore(), PER_PAIR, PER_CLIENT, PER_EMAIL, 100)
    stale = SWEEP_ROWS + SWEEP_ROWS // 2
    now = time.time()
    async with db.engine.begin() as connection:
        await connection.execute(
            insert(login_failures_table),
            [{"counter": f"email:gone{n}@ex.com", "failed_at": now - 500} for n in range(stale)]
            + [{"counter": "email:recent@example.com", "failed_at": now - 50}],
        )
        await connection.execute(
            insert(login_known_clients_table),
            [
                {"email": "me@example.com", "client": "192.0.2.1", "since": now - 31 * 86400},
                {"email": "you@example.com", "client": "192.0.2.1", "since": now - 31 * 86400},
            ],
        )
    async with db.engine.connect() as connection:
        await throttle.record_failure(connection, "new@example.com", "192.0.2.9")
        held = await shared.held()
        assert sum(n for counter, n in held.failures.items() if "gone" in counter) == (
            stale - SWEEP_ROWS
        )
        await throttle.record_failure(connection, "new@example.com", "192.0.2.9")
        await throttle.record_success(connection, "me@example.com", "192.0.2.2")
    held = await shared.held()
    assert held.failures == {
        "email:recent@example.com": 1,
        "pair:192.0.2.9:new@example.com": 2,
        "client:192.0.2.9": 2,
        "email:new@example.com": 2,
    }
    # The account that logged in forgot its stale client; another account's waits its turn.
    assert held.known == {("me@example.com", "192.0.2.2"), ("you@example.com", "192.0.2.1")}


@pytest.mark.parametrize("store", ["redis"])
async def test_redis_keys_expire_with_the_window_and_after_30_days(
    app: FastAPI, shared: Shared
) -> None:
    assert shared.keys is not None
    async with from_address(app, "192.0.2.90") as client:
        await signup(client, "expiry@example.com")
        assert (await login(client, "expiry@example.com")).status_code == 401
        assert (await login(client, "expiry@example.com", PASSWORD)).status_code == 200
    redis, prefix = shared.keys.redis, shared.keys.prefix
    for counter in ("client:192.0.2.90", "email:expiry@example.com"):
        assert WINDOW - 5 <= await redis.ttl(prefix + counter) <= WINDOW + 1
    known = await redis.ttl(f"{prefix}known:192.0.2.90:expiry@example.com")
    assert KNOWN_CLIENT_SECONDS - 5 <= known <= KNOWN_CLIENT_SECONDS
    assert await redis.exists(f"{prefix}pair:192.0.2.90:expiry@example.com") == 0


@pytest.mark.parametrize("store", [pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_failures_survive_the_401_behind_a_transaction_pooler(
    settings: Settings, shared: Shared, db: DatabaseProbe
) -> None:
    """With `DB_STATEMENT_CACHE=false` a request is one transaction, which its 401 rolls back:
    the failure must be committed before that."""
    pooled = settings.model_copy(update={"db_statement_cache": False})
    async with (
        running(pooled) as (pooled_app, _),
        from_address(pooled_app, "192.0.2.100") as client,
        from_address(pooled_app, "192.0.2.101") as owner,
    ):
        await signup(client, "pooled@example.com")
        assert await statuses(client, "pooled@example.com", PER_PAIR) == [401] * PER_PAIR
        assert_throttled(await login(client, "pooled@example.com", PASSWORD))
        assert (await login(owner, "pooled@example.com", PASSWORD)).status_code == 200
    held = await shared.held()
    assert held.failures["pair:192.0.2.100:pooled@example.com"] == PER_PAIR
    assert held.known == {("pooled@example.com", "192.0.2.101")}


@pytest.mark.parametrize("store", ["sqlite"])
async def test_an_unreachable_redis_makes_logins_503_not_unthrottled(settings: Settings) -> None:
    unreachable = {"redis_url": "redis://127.0.0.1:1/0", "rate_limit_per_minute": 0}
    async with (
        running(settings.model_copy(update=unreachable)) as (app, _),
        from_address(app, "192.0.2.110") as client,
    ):
        response = await login(client, "anyone@example.com", PASSWORD)
    assert response.status_code == 503, response.text
    assert response.json() == {"detail": STORE_UNAVAILABLE}
    assert int(response.headers["retry-after"]) > 0
