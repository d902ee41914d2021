"""Per-user rate limits (SPEC §13) in-process, on both databases and on Redis: the configured
count passes with `RateLimit-Policy`/`RateLimit` on every answer, the next request is a 429
with `Retry-After`; other users, unauthenticated requests and the unlimited routes are not
touched; `0` turns it off. Every test checks what the shared store holds afterwards.

The window's clock is the limiter's own (`RateLimiter.clock`): the tests hold it one second
into the current minute and move it on, rather than wait for the next. (Two real instances on
one PostgreSQL are tests/test_rate_limits_processes.py.)"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response
from redis.asyncio import Redis

from tests.conftest import DatabaseProbe, auth, redis_test_url, running
from todo_api.config import Settings
from todo_api.errors import RateLimited
from todo_api.shared_state.rate_limits import (
    MAX_LEASE,
    REDIS_KEY_PREFIX,
    STORE_UNAVAILABLE,
    WINDOW_SECONDS,
    DatabaseLeases,
    LeaseStore,
    RateLimiter,
    RedisLeases,
    document_rate_limits,
    lease_size,
)

LIMIT = 5
# A database number of its own on the shared Redis; the tests delete only the keys they made.
UNREACHABLE_REDIS_URL = "redis://127.0.0.1:1/0"
POLICY = f'"default";q={LIMIT};w=60'
MCP_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2025-06-18",
}
UNLIMITED_PATHS = ("/health", "/health/ready", "/metrics", "/docs", "/openapi.json")


class Clock:
    """The limiter's wall clock, held still: one second into the minute the test started in."""

    def __init__(self) -> None:
        self.now = time.time() // WINDOW_SECONDS * WINDOW_SECONDS + 1

    def __call__(self) -> float:
        return self.now

    @property
    def window_start(self) -> int:
        return int(self.now // WINDOW_SECONDS * WINDOW_SECONDS)


@pytest.fixture(scope="session")
def redis_url() -> str:
    return redis_test_url()


@pytest.fixture(params=["database", "redis"])
def store_url(request: pytest.FixtureRequest) -> str:
    """Where the budget lives: "" for the database under test, else Redis."""
    if request.param == "database":
        return ""
    url: str = request.getfixturevalue("redis_url")
    return url


@dataclass
class Limited:
    """An app with a small limit, its client, its clock, and this test's own user names."""

    app: FastAPI
    client: AsyncClient
    clock: Clock
    prefix: str
    redis: Redis | None
    users: set[str] = field(default_factory=set)

    @property
    def limiter(self) -> RateLimiter:
        limiter = self.app.state.runtime.rate_limiter
        assert isinstance(limiter, RateLimiter)
        return limiter

    def user(self, name: str) -> str:
        """A user id no other test (or earlier run) has used."""
        user = self.prefix + name
        self.users.add(user)
        return user

    async def get(self, user: str, path: str = "/api/tasks") -> Response:
        return await self.client.get(path, headers=auth(user))

    async def stored(self, user: str) -> dict[str, int] | None:
        """The user's window as the shared store holds it: the table's row or the hash."""
        if self.redis is not None:
            fields = await self.redis.hgetall(REDIS_KEY_PREFIX + user)
            return {_text(key): int(value) for key, value in fields.items()} or None
        probe = DatabaseProbe(self.app.state.runtime.engine)
        rows = await probe.rows(
            "SELECT window_start, used, last_grant FROM rate_limit_windows WHERE user_id = :u",
            u=user,
        )
        return {key: int(value) for key, value in rows[0].items()} if rows else None


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limited_app(settings: Settings, store_url: str, clock: Clock) -> Any:
    """`limited_app(limit=…)`: an app whose limiter runs on the test's clock and store; the
    Redis keys of the test's users are deleted afterwards."""

    @asynccontextmanager
    async def start(limit: int = LIMIT, redis_url: str | None = None) -> AsyncIterator[Limited]:
        update = {
            "rate_limit_per_minute": limit,
            "redis_url": store_url if redis_url is None else redis_url,
        }
        async with running(settings.model_copy(update=update)) as (app, client):
            if app.state.runtime.rate_limiter is not None:
                app.state.runtime.rate_limiter.clock = clock
            limited = Limited(
                app, client, clock, f"rl-{uuid.uuid4().hex[:8]}-", app.state.runtime.redis
            )
            yield limited
            if limited.redis is not None and limited.users:
                await limited.redis.delete(*(REDIS_KEY_PREFIX + user for user in limited.users))

    return start


@pytest.fixture
async def limited(limited_app: Any) -> AsyncIterator[Limited]:
    async with limited_app() as app:
        yield app


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def assert_admitted(response: Response, remaining: int, *, reset: int = 59) -> None:
    assert response.status_code != 429, response.text
    assert response.headers["ratelimit-policy"] == POLICY
    assert response.headers["ratelimit"] == f'"default";r={remaining};t={reset}'
    assert "retry-after" not in response.headers


def assert_refused(response: Response, *, retry_after: int = 59) -> None:
    assert response.status_code == 429, response.text
    assert response.json() == {"detail": RateLimited.detail}
    assert response.headers["retry-after"] == str(retry_after)
    assert response.headers["ratelimit-policy"] == POLICY
    assert response.headers["ratelimit"] == f'"default";r=0;t={retry_after}'
    assert response.headers["content-type"] == "application/json"


def assert_unlimited(response: Response) -> None:
    assert "ratelimit" not in response.headers
    assert "ratelimit-policy" not in response.headers


# The limit and its headers.


async def test_the_configured_count_passes_and_the_next_is_refused(limited: Limited) -> None:
    alice = limited.user("alice")
    client, headers = limited.client, auth(alice)
    # Every route under /api counts against the same budget.
    created = await client.post("/api/tasks", json={"title": "Count me"}, headers=headers)
    assert_admitted(created, 4)
    assert created.status_code == 201
    task = created.json()["id"]
    assert_admitted(await client.get(f"/api/tasks/{task}", headers=headers), 3)
    assert_admitted(await client.patch(f"/api/tasks/{task}/complete", headers=headers), 2)
    assert_admitted(await client.get("/api/tags", headers=headers), 1)
    # An error after admission counts as well, and carries the headers.
    missing = await client.get(f"/api/tasks/{uuid.uuid4()}", headers=headers)
    assert missing.status_code == 404
    assert_admitted(missing, 0)

    refused = await limited.get(alice)
    assert_refused(refused)
    assert_refused(await client.post("/api/tasks", json={"title": "Not me"}, headers=headers))
    assert await limited.stored(alice) == {
        "window_start": limited.clock.window_start,
        "used": LIMIT,
        # Five left is a lease of one (a quarter, at least one) each time.
        "last_grant": 1,
    }


async def test_another_user_is_unaffected(limited: Limited) -> None:
    alice, bob = limited.user("alice"), limited.user("bob")
    for remaining in reversed(range(LIMIT)):
        assert_admitted(await limited.get(alice), remaining)
    assert_refused(await limited.get(alice))

    assert_admitted(await limited.get(bob), LIMIT - 1)
    assert (await limited.stored(alice) or {})["used"] == LIMIT
    assert (await limited.stored(bob) or {})["used"] == 1


async def test_a_new_window_restores_the_budget(limited: Limited) -> None:
    alice = limited.user("alice")
    for remaining in reversed(range(LIMIT)):
        assert_admitted(await limited.get(alice), remaining)
    limited.clock.now += 30
    refused = await limited.get(alice)
    assert_refused(refused, retry_after=29)

    # `Retry-After` seconds later is the next window.
    limited.clock.now += int(refused.headers["retry-after"])
    assert limited.clock.now % WINDOW_SECONDS == 0
    assert_admitted(await limited.get(alice), LIMIT - 1, reset=60)
    assert await limited.stored(alice) == {
        "window_start": limited.clock.window_start,
        "used": 1,
        "last_grant": 1,
    }


async def test_unauthenticated_requests_and_other_routes_are_not_limited(
    limited: Limited,
) -> None:
    alice = limited.user("alice")
    for _ in range(3 * LIMIT):
        no_token = await limited.client.get("/api/tasks")
        assert no_token.status_code == 401
        assert_unlimited(no_token)
        wrong_token = await limited.client.get(
            "/api/tasks", headers={"Authorization": "Bearer not.a.token"}
        )
        assert wrong_token.status_code == 401
        assert_unlimited(wrong_token)
    for path in UNLIMITED_PATHS:
        for _ in range(LIMIT + 1):
            response = await limited.client.get(path, headers=auth(alice))
            assert response.status_code == 200, path
            assert_unlimited(response)
    metadata = await limited.client.get("/.well-known/oauth-protected-resource/mcp")
    assert metadata.status_code == 200
    assert_unlimited(metadata)

    assert await limited.stored(alice) is None
    assert_admitted(await limited.get(alice), LIMIT - 1)


async def test_mcp_counts_against_the_same_budget(limited: Limited) -> None:
    alice = limited.user("alice")
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {**auth(alice), **MCP_HEADERS}
    listed = await limited.client.post("/mcp", json=message, headers=headers)
    assert listed.status_code == 200, listed.text
    assert listed.json()["result"]["tools"]
    assert_admitted(listed, LIMIT - 1)
    for remaining in reversed(range(LIMIT - 1)):
        assert_admitted(await limited.get(alice), remaining)

    assert_refused(await limited.client.post("/mcp", json=message, headers=headers))
    unauthenticated = await limited.client.post("/mcp", json=message, headers=MCP_HEADERS)
    assert unauthenticated.status_code == 401
    assert_unlimited(unauthenticated)
    assert (await limited.stored(alice) or {})["used"] == LIMIT


async def test_concurrent_requests_of_one_user_never_exceed_the_limit(limited: Limited) -> None:
    alice = limited.user("alice")
    responses = await asyncio.gather(*(limited.get(alice) for _ in range(3 * LIMIT)))

    admitted = [response for response in responses if response.status_code == 200]
    assert len(admitted) == LIMIT
    assert sorted(response.headers["ratelimit"] for response in admitted) == [
        f'"default";r={remaining};t=59' for remaining in range(LIMIT)
    ]
    for response in responses:
        if response.status_code != 200:
            assert_refused(response)
    assert (await limited.stored(alice) or {})["used"] == LIMIT


async def test_leases_shrink_as_the_budget_runs_low(limited_app: Any) -> None:
    """A limit large enough for leases of more than one: a burst still gets exactly the
    limit, and the store went from large leases to single requests."""
    limit = 60
    async with limited_app(limit=limit) as limited:
        alice = limited.user("alice")
        responses = await asyncio.gather(*(limited.get(alice) for _ in range(3 * limit)))
        statuses = [response.status_code for response in responses]
        assert statuses.count(200) == limit
        assert statuses.count(429) == 2 * limit
        # 60 → leases of 15, 11, 8, 6, 5, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1: the last one is 1.
        assert await limited.stored(alice) == {
            "window_start": limited.clock.window_start,
            "used": limit,
            "last_grant": 1,
        }


def test_a_lease_is_a_quarter_of_what_is_left_within_bounds() -> None:
    assert lease_size(600) == MAX_LEASE == 100
    assert lease_size(200) == 50
    assert lease_size(7) == 1
    assert lease_size(1) == 1
    assert lease_size(0) == 0
    assert lease_size(10_000, max_lease=10) == 10


async def test_zero_turns_it_off(limited_app: Any) -> None:
    async with limited_app(limit=0) as limited:
        assert limited.app.state.runtime.rate_limiter is None
        alice = limited.user("alice")
        for _ in range(3 * LIMIT):
            response = await limited.get(alice)
            assert response.status_code == 200
            assert_unlimited(response)
        assert await limited.stored(alice) is None


async def test_two_processes_sharing_a_store_admit_exactly_the_limit(limited: Limited) -> None:
    """Two limiters on one store, as two workers or instances have: requests alternating
    between them get exactly the limit in all, and neither refuses while the store has room."""
    limit = 50
    runtime = limited.app.state.runtime
    store: LeaseStore
    if runtime.redis is not None:
        store = RedisLeases(runtime.redis, limit=limit)
    else:
        store = DatabaseLeases(engine=runtime.engine, autocommit=runtime.autocommit, limit=limit)
    first, second = (RateLimiter(limit, store, clock=limited.clock) for _ in range(2))
    alice = limited.user("alice")
    admitted = 0
    for turn in range(3 * limit):
        try:
            await (first, second)[turn % 2].admit(alice)
        except RateLimited:
            stored = await limited.stored(alice)
            assert stored is not None
            assert stored["used"] == limit, "refused while the store had room"
        else:
            admitted += 1
    assert admitted == limit


async def test_memory_is_bounded_and_old_windows_are_forgotten(limited: Limited) -> None:
    limiter = RateLimiter(LIMIT, limited.limiter.store, clock=limited.clock, max_tracked_users=3)
    for number in range(10):
        await limiter.admit(limited.user(f"user{number}"))
        assert limiter.tracked_users == min(number + 1, 3)
    limited.clock.now += WINDOW_SECONDS
    await limiter.admit(limited.user("late"))
    assert limiter.tracked_users == 1


# When the store cannot answer.


async def test_an_unreachable_redis_is_a_503_for_every_waiting_request(
    settings: Settings,
) -> None:
    update = {"rate_limit_per_minute": LIMIT, "redis_url": UNREACHABLE_REDIS_URL}
    async with running(settings.model_copy(update=update)) as (_, client):
        started = time.monotonic()
        responses = await asyncio.gather(
            *(client.get("/api/tasks", headers=auth()) for _ in range(5))
        )
        assert time.monotonic() - started < 5
    for response in responses:
        assert response.status_code == 503
        assert response.json() == {"detail": STORE_UNAVAILABLE}
        assert response.headers["retry-after"] == "2"
        assert_unlimited(response)


# The OpenAPI document.


def test_every_operation_with_the_bearer_token_documents_the_limit(app: FastAPI) -> None:
    document = document_rate_limits(app.openapi(), "HTTPBearer")
    limited = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            security = [name for entry in operation.get("security", []) for name in entry]
            responses = operation["responses"]
            if "HTTPBearer" not in security:
                assert "ratelimit" not in str(responses).lower(), (method, path)
                continue
            limited += 1
            refused = responses["429"]
            assert {"X-Request-ID", "Retry-After", "RateLimit-Policy", "RateLimit"} <= set(
                refused["headers"]
            )
            media = refused["content"]["application/json"]
            assert media["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
            if (method, path) == ("get", "/api/events"):  # its own 429 too: too many streams
                assert "event streams" in media["example"]["detail"]
                assert "RATE_LIMIT_PER_MINUTE" in refused["description"]
            else:
                assert media["example"] == {"detail": RateLimited.detail}
            for status, response in responses.items():
                if status.startswith(("2", "3")):
                    assert {"RateLimit-Policy", "RateLimit"} <= set(response["headers"]), status
    assert limited >= 15
    assert document_rate_limits(document, "HTTPBearer") == document


# Where the limit meets idempotency keys.


async def test_a_refused_keyed_write_runs_when_retried_in_the_next_window(
    limited: Limited,
) -> None:
    alice = limited.user("alice")
    for _ in range(LIMIT):
        await limited.get(alice)
    headers = {**auth(alice), "Idempotency-Key": str(uuid.uuid4())}
    body = {"title": "Sent while limited"}
    assert_refused(await limited.client.post("/api/tasks", json=body, headers=headers))
    limited.clock.now += WINDOW_SECONDS
    retried = await limited.client.post("/api/tasks", json=body, headers=headers)
    assert retried.status_code == 201, retried.text
